"""Advance a state by many steps, using a fused kernel when one fits.

``advance(rule, state, loss_fn, steps)`` is the loop every caller uses. It is exactly
``for _ in range(steps): state = rule.step(state, loss_fn)``, except that neuroevolution of a
tanh MLP on CPU runs many steps per call in the C kernel of :mod:`negd.kernels`, which draws
the same random numbers (:mod:`negd.rng`) and so takes the same steps.
"""

from __future__ import annotations

from negd.rules.base import LossFn, UpdateRule
from negd.state import State
from negd.validation import check_int

__all__ = ["advance"]


def advance(rule: UpdateRule, state: State, loss_fn: LossFn, steps: int) -> State:
    """``steps`` steps of ``rule`` from ``state`` (see module docstring)."""
    steps = check_int("steps", steps, 0)
    if steps == 0:
        return state
    from negd import kernels  # late import: building the kernel is only needed here

    fused = kernels.fused_step_fn(rule, state, loss_fn)
    if fused is not None:
        return fused(state, steps)
    for _ in range(steps):
        state = rule.step(state, loss_fn)
    return state
