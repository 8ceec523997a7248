"""Advance a state by many steps, using a fused kernel when one fits.

``advance(rule, state, loss_fn, steps)`` is the loop every caller uses. It is exactly
``for _ in range(steps): state = rule.step(state, loss_fn)``, except that neuroevolution of an
MLP (:class:`negd.losses.mlp.MLPLoss`: tanh, relu, gelu or identity; mse or cross-entropy) on CPU,
with float32 or float64 parameters, runs many steps per call in the C kernel of
:mod:`negd.kernels`, which draws the same random numbers (:mod:`negd.rng`) and so takes the
same steps. Likewise gradient descent and Langevin dynamics (:class:`negd.rules.GradientDescent`,
:class:`negd.rules.Langevin`) on a loss that offers the gradient kernel's layout (``kernel_grad_data``,
e.g. :class:`negd.experiments.run.twin.TwinLoss` of a tanh MLP with the mean squared error) run many
steps per call in :func:`negd.kernels.gradient.fused_langevin`: the same noise (stream
STREAM_LANGEVIN) and roundings as the rule, the gradient by backpropagation in C. This module is
where that dispatch lives: the kernels themselves only compute on tensors.

``advance_counted`` also returns how many of those steps each realization accepted, and
``advance_tallied`` also how many proposals tied (dU == 0 exactly: a loss too coarse to resolve
the move, see :mod:`negd.diagnostics.resolution`).

All three take ``callbacks`` (negd.callbacks: e.g. a JSONLLogger) and ``log_every``: the steps then
run in chunks of ``log_every`` (default: 20 chunks per call), the same numbers as one call, and after
each chunk every callback gets an Event("advance", step, {loss_mean, loss_min, loss_max, acceptance}).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.callbacks import Callback, Event, as_callbacks, emit, events_every
from negd.losses.base import LossFn
from negd.losses.mlp import MLPLoss
from negd.rules import GradientDescent, Langevin, Neuroevolution
from negd.rules.base import UpdateRule
from negd.state import State
from negd.validation import check_int

__all__ = ["advance", "advance_counted", "advance_tallied", "Tally", "fused_step_fn"]


@dataclass(frozen=True)
class Tally:
    """Per realization over a call of :func:`advance_tallied`: accepted moves and exact ties [R] int64."""

    accepted: Tensor
    ties: Tensor


FusedStep = Callable[[State, int], tuple[State, Tally]]


def fused_step_fn(rule: UpdateRule, state: State, loss_fn: LossFn) -> FusedStep | None:
    """A function ``(state, steps) -> (state, Tally)`` running fused kernel steps, or None.

    Fits when ``rule`` is :class:`negd.rules.Neuroevolution`, ``loss_fn`` an :class:`MLPLoss`
    with backend "auto" or "c" whose kernel is available, and the parameters are float32 or float64
    on CPU with a scalar or per-parameter sigma; or when ``rule`` is exactly :class:`GradientDescent` or
    :class:`Langevin` and ``loss_fn.kernel_grad_data`` (e.g. :class:`negd.experiments.run.twin.TwinLoss`)
    takes the parameters. None otherwise (the caller then loops ``rule.step``).
    """
    if type(rule) in (GradientDescent, Langevin):
        return _fused_gradient_fn(rule, state, loss_fn)
    if not isinstance(rule, Neuroevolution) or not isinstance(loss_fn, MLPLoss):
        return None
    if state.loss.device.type != "cpu":
        return None
    data = loss_fn.kernel_data(state.params)
    if data is None:
        return None
    # float64 first, as Neuroevolution.mutation takes it: float64 parameters must see sigma = 1e-3, not
    # the float32 number nearest to it
    sigma = torch.as_tensor(rule.sigma, dtype=torch.float64).reshape(-1)
    if sigma.numel() not in (1, state.n_params):
        return None
    from negd import kernels

    def run(state: State, steps: int) -> tuple[State, Tally]:
        out = kernels.fused_neuroevolution(data, state.params, state.loss, state.accepted, state.tied,
                                           state.realization,
                                           seed=state.seed, step=state.step, steps=steps, sigma=sigma,
                                           beta=rule.beta)
        new = state.replace(params=out.params, loss=out.loss, step=state.step + int(steps),
                            accepted=out.accepted, tied=out.tied)
        return new, Tally(out.counts, out.ties)

    return run


def _fused_gradient_fn(rule: GradientDescent | Langevin, state: State, loss_fn: LossFn) -> FusedStep | None:
    """Fused steps x <- x - alpha g + noise xi where ``loss_fn.kernel_grad_data`` takes the parameters."""
    layout = getattr(loss_fn, "kernel_grad_data", None)
    if layout is None or state.loss.device.type != "cpu":
        return None
    data = layout(state.params)
    if data is None:
        return None
    from negd.kernels.gradient import fused_langevin, mlp_value_and_grad

    def run(state: State, steps: int) -> tuple[State, Tally]:
        grad = state.extras.get("grad")
        if grad is None:  # e.g. a state made by another rule
            _, grad = mlp_value_and_grad(data, state.params)
        out = fused_langevin(data, state.params, grad, state.realization, seed=state.seed,
                             step=state.step, steps=steps, alpha=rule.alpha, noise=rule.noise,
                             stream=rng.STREAM_LANGEVIN)
        new = state.replace(params=out.params, loss=out.loss, step=state.step + int(steps),
                            accepted=torch.ones_like(state.accepted),
                            extras={**state.extras, "grad": out.grad})
        # as the rule's loop counts them: every step accepted, the state's tie flag carried along
        accepted = torch.full_like(state.realization, int(steps))
        return new, Tally(accepted, state.tied.to(torch.int64) * int(steps))

    return run


def advance_tallied(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int, *,
                    callbacks: Callback | Iterable[Callback] | None = None,
                    log_every: int | None = None) -> tuple[State, Tally]:
    """``steps`` steps of ``rule``, with each realization's accepted moves and exact ties.

    ``callbacks``/``log_every``: events every ``log_every`` steps (module docstring)."""
    steps = check_int("steps", steps, 0)
    hooks = as_callbacks(callbacks)
    if hooks:
        return _advance_logged(rule, state, loss_fn, steps, hooks, events_every(steps, log_every))
    zeros = torch.zeros(state.n_realizations, dtype=torch.int64, device=state.params.device)
    if steps == 0:
        return state, Tally(zeros, zeros.clone())
    fused = fused_step_fn(rule, state, loss_fn)
    if fused is not None:
        return fused(state, steps)
    accepted, ties = zeros, zeros.clone()
    for _ in range(steps):
        state = rule.step(state, loss_fn)
        accepted = accepted + state.accepted
        ties = ties + state.tied
    return state, Tally(accepted, ties)


def _advance_logged(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int, hooks: tuple,
                    every: int) -> tuple[State, Tally]:
    """advance_tallied in chunks of ``every`` steps, an Event after each (counter-based RNG: same numbers)."""
    zeros = torch.zeros(state.n_realizations, dtype=torch.int64, device=state.params.device)
    accepted, ties, done = zeros, zeros.clone(), 0
    while done < steps:
        n = min(every, steps - done)
        state, tally = advance_tallied(rule, state, loss_fn, n)
        accepted, ties, done = accepted + tally.accepted, ties + tally.ties, done + n
        loss = state.loss.detach().to(torch.float64)
        emit(hooks, Event("advance", int(state.step), {
            "loss_mean": float(loss.mean()), "loss_min": float(loss.min()), "loss_max": float(loss.max()),
            "acceptance": float(tally.accepted.sum()) / (n * state.n_realizations)}))
    return state, Tally(accepted, ties)


def advance_counted(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int, *,
                    callbacks: Callback | Iterable[Callback] | None = None,
                    log_every: int | None = None) -> tuple[State, Tensor]:
    """``steps`` steps of ``rule``, and the number of accepted moves of each realization [R] int64."""
    state, tally = advance_tallied(rule, state, loss_fn, steps, callbacks=callbacks, log_every=log_every)
    return state, tally.accepted


def advance(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int, *,
            callbacks: Callback | Iterable[Callback] | None = None, log_every: int | None = None) -> State:
    """``steps`` steps of ``rule`` from ``state`` (see module docstring); ``callbacks`` get an
    Event every ``log_every`` steps (negd.callbacks)."""
    return advance_counted(rule, state, loss_fn, steps, callbacks=callbacks, log_every=log_every)[0]
