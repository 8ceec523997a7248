"""Minibatch losses whose batches are a pure function of (seed, realization, step).

A :class:`MinibatchLoss` holds P data points and a batch size B. The batch of realization r at step t
is B distinct points drawn without replacement from a counter-based stream (:mod:`negd.rng`): point j
gets the 32-bit Philox key of counter (block j // 4, word j % 4) under (seed, step t, realization r,
stream :data:`STREAM_MINIBATCH`), and the batch is the B points with the smallest keys (ties broken
by j, so the keys ``word * P + j`` are distinct). The same seed therefore gives the same batches
whatever the ensemble size R, the chunking, or which rule (neuroevolution or its SGD twin) asks.

Update rules receive ``loss_fn`` at every step, but a minibatch loss also needs the step and the
realization ids. The protocol: a rule that understands minibatches calls :meth:`MinibatchLoss.at`
with its state and gets the plain loss function [R, N] -> [R] of that step's batches
(:class:`negd.rules.MinibatchNeuroevolution`, :class:`negd.rules.MinibatchGradient`). Called
directly, a :class:`MinibatchLoss` is the full-data loss, so every other rule, the regime check and
the reports can use it unchanged.

A second, independent draw of the same step (the ``"fresh"`` noise policy of
:class:`negd.rules.MinibatchNeuroevolution`: parent and proposal on independent batches) is
:meth:`MinibatchLoss.second_draw`: the same construction under the stream
:data:`negd.rng.STREAM_MINIBATCH_SECOND`, so it too is a pure function of (seed, realization, step).
:func:`second_draw_loss` asks a loss for it and refuses, in one line, a loss that has a per-step
draw (``at``) but no second one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn
from negd.losses.mlp import mse
from negd.losses.models import MLPSpec
from negd.state import State
from negd.validation import NegdError, check_data, check_int

__all__ = ["STREAM_MINIBATCH", "STREAM_MINIBATCH_SECOND", "MinibatchLoss", "batch_indices", "step_loss",
           "second_draw_loss", "check_second_draw"]

# Stream tag of the batch draws (mutation 0, accept 1, init 2, Langevin 3 in negd.rng).
STREAM_MINIBATCH = rng.STREAM_MINIBATCH  # every stream tag is defined in negd.rng
STREAM_MINIBATCH_SECOND = rng.STREAM_MINIBATCH_SECOND

BatchLoss = Callable[[Tensor, Tensor, Tensor], Tensor]  # (params [R, N], x [R, B, ...], y [R, B, ...]) -> [R]


def batch_indices(seed: int, realization: Tensor, step: int, n_points: int, batch_size: int,
                  stream: int = STREAM_MINIBATCH) -> Tensor:
    """Indices [R, B] (int64) of the batch of each realization at ``step`` (module docstring).

    ``stream`` :data:`STREAM_MINIBATCH_SECOND` gives the step's second, independent batch."""
    n_points = check_int("n_points", n_points)
    batch_size = check_int("batch_size", batch_size)
    if batch_size > n_points:
        raise NegdError(f"batch_size: must be <= the number of data points ({n_points}), got {batch_size}")
    rid = realization.to(torch.int64).reshape(-1, 1)
    st = torch.full_like(rid, int(step))
    blocks = torch.arange((n_points + 3) // 4, dtype=torch.int64, device=rid.device).reshape(1, -1)
    words = rng.philox4x32(blocks, *rng.counter_words(st, rid, stream), seed)
    keys = torch.stack(words, dim=-1).reshape(rid.shape[0], -1)[:, :n_points]
    keys = keys * n_points + torch.arange(n_points, dtype=torch.int64, device=rid.device)
    return keys.topk(batch_size, dim=1, largest=False).indices


class MinibatchLoss:
    """Loss on per-(realization, step) minibatches of ``inputs`` [P, ...] and ``targets`` [P, ...].

    ``batch_loss(params [R, N], x [R, B, ...], y [R, B, ...]) -> [R]`` is the loss of each
    realization on its own batch; :meth:`for_mlp` builds it for a tanh MLP (MSE).
    """

    def __init__(self, batch_loss: BatchLoss, inputs: Tensor, targets: Tensor, batch_size: int) -> None:
        check_data("inputs", inputs)
        check_data("targets", targets)
        if targets.shape[0] != inputs.shape[0]:
            raise NegdError(f"targets: must have {inputs.shape[0]} points like the inputs, got "
                            f"{targets.shape[0]}")
        self.batch_size = check_int("batch_size", batch_size)
        if self.batch_size > inputs.shape[0]:
            raise NegdError(f"batch_size: must be <= the number of data points ({inputs.shape[0]}), "
                            f"got {batch_size}")
        self.batch_loss, self.inputs, self.targets = batch_loss, inputs, targets

    @staticmethod
    def for_mlp(spec: MLPSpec, inputs: Tensor, targets: Tensor, batch_size: int) -> MinibatchLoss:
        """MSE of the tanh MLP ``spec`` on each realization's batch."""
        def batch_loss(params: Tensor, x: Tensor, y: Tensor) -> Tensor:
            return mse(spec.forward(params, x), y.to(params.dtype))

        loss = MinibatchLoss(batch_loss, inputs, targets, batch_size)
        loss.n_params = spec.n_params
        return loss

    @property
    def n_points(self) -> int:
        return self.inputs.shape[0]

    def indices(self, seed: int, realization: Tensor, step: int, stream: int = STREAM_MINIBATCH) -> Tensor:
        return batch_indices(seed, realization, step, self.n_points, self.batch_size, stream)

    def on_batches(self, seed: int, realization: Tensor, step: int, stream: int = STREAM_MINIBATCH
                   ) -> LossFn:
        """The loss [R, N] -> [R] on the batches of ``realization`` [R] at ``step`` (``stream``:
        :data:`STREAM_MINIBATCH` for the step's batch, :data:`STREAM_MINIBATCH_SECOND` for its second)."""
        idx = self.indices(seed, realization, step, stream).to(self.inputs.device)
        x, y = self.inputs[idx], self.targets[idx]  # [R, B, ...]

        def loss_fn(params: Tensor) -> Tensor:
            if params.dim() != 2 or params.shape[0] != idx.shape[0]:
                raise NegdError(f"params: a minibatch loss of {idx.shape[0]} realizations needs params "
                                f"[{idx.shape[0]}, N], got {list(params.shape)}")
            return self.batch_loss(params, x, y)

        return loss_fn

    def at(self, state: State) -> LossFn:
        """The loss of ``state``'s step: each realization on its own batch."""
        return self.on_batches(state.seed, state.realization, state.step)

    def second_draw(self, state: State) -> LossFn:
        """The loss of ``state``'s step on a second batch per realization, independent of :meth:`at`'s."""
        return self.on_batches(state.seed, state.realization, state.step, STREAM_MINIBATCH_SECOND)

    def __call__(self, params: Tensor) -> Tensor:
        """Full-data loss of params [R, N]: every realization on all P points."""
        r = params.shape[0]
        x = self.inputs.unsqueeze(0).expand(r, *self.inputs.shape)
        y = self.targets.unsqueeze(0).expand(r, *self.targets.shape)
        return self.batch_loss(params, x, y)


def step_loss(loss_fn: LossFn, state: State) -> LossFn:
    """The loss function of ``state``'s step: ``loss_fn.at(state)`` for a minibatch loss, else loss_fn."""
    at = getattr(loss_fn, "at", None)
    return at(state) if at is not None else loss_fn


def check_second_draw(loss_fn: LossFn) -> None:
    """Refuse, in one line, a loss with a per-step draw (``at``) but no independent second one."""
    if getattr(loss_fn, "at", None) is not None and getattr(loss_fn, "second_draw", None) is None:
        raise NegdError(f"loss_fn: the 'fresh' noise policy needs a second, independent draw of each "
                        f"step (a method second_draw(state), as MinibatchLoss and ControlLoss have); "
                        f"{type(loss_fn).__name__} has only at(state): use mode 'paired' or 'stale'")


def second_draw_loss(loss_fn: LossFn, state: State) -> LossFn:
    """The loss of ``state``'s step on a draw independent of :func:`step_loss`'s.

    ``loss_fn.second_draw(state)`` for a stochastic loss; a loss without ``at`` is deterministic, so
    it is its own second draw; a loss with ``at`` but no ``second_draw`` is refused
    (:func:`check_second_draw`).
    """
    check_second_draw(loss_fn)
    second = getattr(loss_fn, "second_draw", None)
    return second(state) if second is not None else loss_fn
