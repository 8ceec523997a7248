"""Neuroevolution on minibatches (:class:`negd.losses.minibatch.MinibatchLoss`).

The rule and its SGD twin (:class:`negd.twins.minibatch.MinibatchGradient`) ask the loss for the
batches of their step (``loss_fn.at(state)``; any other loss function is used as it is, the same
data every step), so a neuroevolution ensemble and its SGD twin run with the same seed see the same
batch sequence, realization by realization.

:class:`MinibatchNeuroevolution` has two ways to score the current parameters:

* ``"paired"``: old and new parameters on the same batch, two evaluations per step. At beta = inf
  the twin is normalized SGD with alpha = sigma/sqrt(2 pi) on the same batches
  (:func:`negd.twins.minibatch_twin`), exactly as in the full-batch case with g replaced by the batch
  gradient;
* ``"stale"``: the stored loss of the current parameters, from the batch on which they were accepted
  (one evaluation per step). The batch noise of the comparison, of standard deviation s, acts like a
  temperature: for s >> sigma |g| acceptance is about Phi(-dU/s), whose drift equals the Metropolis
  one at beta_eff = sqrt(2/pi)/s (:func:`negd.theory.minibatch.stale_beta_eff`).

Mutations and uniforms are those of :class:`negd.rules.Neuroevolution`, so with a full-batch loss both
modes are the paper's rule. ``state.loss`` is the loss on the batch of the last comparison.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.losses.minibatch import step_loss
from negd.rules.neuroevolution import Neuroevolution, metropolis_accept
from negd.state import State
from negd.validation import NegdError

__all__ = ["MinibatchNeuroevolution", "MODES"]

MODES = ("paired", "stale")


@dataclass(frozen=True)
class MinibatchNeuroevolution:
    """Neuroevolution on minibatches, ``mode`` "paired" or "stale" (module docstring)."""

    sigma: float | Tensor
    beta: float = math.inf
    mode: str = "paired"

    def __post_init__(self) -> None:
        plain = Neuroevolution(self.sigma, self.beta)  # validates sigma and beta
        object.__setattr__(self, "sigma", plain.sigma)
        object.__setattr__(self, "beta", plain.beta)
        if self.mode not in MODES:
            raise NegdError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def evaluations_per_step(self) -> int:
        return 2 if self.mode == "paired" else 1

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        plain = Neuroevolution(self.sigma, self.beta)
        state = plain.init(params, lambda p: torch.zeros(p.shape[0]), seed=seed, realization=realization)
        return state.replace(loss=evaluate(step_loss(loss_fn, state), params))

    def step(self, state: State, loss_fn: LossFn) -> State:
        batch_loss = step_loss(loss_fn, state)
        proposal = state.params + Neuroevolution(self.sigma, self.beta).mutation(state)
        new_loss = evaluate(batch_loss, proposal)
        old_loss = evaluate(batch_loss, state.params) if self.mode == "paired" else state.loss
        u = None if math.isinf(self.beta) else rng.uniform(state.seed, state.realization, state.step)
        accept = metropolis_accept(new_loss, old_loss, self.beta, u)
        dtype = state.loss.dtype
        return state.replace(
            params=torch.where(accept[:, None], proposal, state.params),
            loss=torch.where(accept, new_loss.to(dtype), old_loss.to(dtype)),
            step=state.step + 1, accepted=accept)
