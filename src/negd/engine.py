"""Advance a state by many steps, using a fused kernel when one fits.

``advance(rule, state, loss_fn, steps)`` is the loop every caller uses. It is exactly
``for _ in range(steps): state = rule.step(state, loss_fn)``, except that neuroevolution of a
tanh MLP on CPU runs many steps per call in the C kernel of :mod:`negd.kernels`, which draws
the same random numbers (:mod:`negd.rng`) and so takes the same steps.
``advance_counted`` also returns how many of those steps each realization accepted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negd.rules.base import LossFn, UpdateRule
from negd.state import State
from negd.validation import check_int

__all__ = ["advance", "advance_counted"]


def advance_counted(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int) -> tuple[State, Tensor]:
    """``steps`` steps of ``rule``, and the number of accepted moves of each realization [R] int64."""
    steps = check_int("steps", steps, 0)
    if steps == 0:
        return state, torch.zeros(state.n_realizations, dtype=torch.int64, device=state.params.device)
    from negd import kernels  # late import: building the kernel is only needed here

    fused = kernels.fused_step_fn(rule, state, loss_fn)
    if fused is not None:
        return fused(state, steps)
    counts = torch.zeros(state.n_realizations, dtype=torch.int64, device=state.params.device)
    for _ in range(steps):
        state = rule.step(state, loss_fn)
        counts += state.accepted
    return state, counts


def advance(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int) -> State:
    """``steps`` steps of ``rule`` from ``state`` (see module docstring)."""
    return advance_counted(rule, state, loss_fn, steps)[0]
