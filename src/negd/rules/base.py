"""The one interface every update rule implements: :class:`UpdateRule`.

A rule is a small frozen dataclass of hyperparameters with two pure functions::

    state = rule.init(params, loss_fn, seed=0)   # params: [R, N] (or [N], shared start)
    state = rule.step(state, loss_fn)             # one step of all R realizations

``loss_fn`` maps flat parameters [R, N] to losses [R] (see :mod:`negd.losses.base`); it is passed
at every step so that minibatch losses and schedules fit the same signature. Because every rule
has this signature, code that compares dynamics (:mod:`negd.compare`) is written once.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

from negd.losses.base import LossFn
from negd.state import State

__all__ = ["UpdateRule"]


@runtime_checkable
class UpdateRule(Protocol):
    """Protocol of an update rule (see module docstring)."""

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State: ...

    def step(self, state: State, loss_fn: LossFn) -> State: ...

