"""Stochastic gradient descent on the batches of neuroevolution: the minibatch twin.

:class:`MinibatchGradient` wraps a gradient rule (``GradientDescent``, ``Langevin`` or
``NormalizedGradientDescent``) whose gradient at step t is that of step t's batches
(``loss_fn.at(state)`` of :class:`negd.losses.minibatch.MinibatchLoss`), so an SGD twin run with the
seed of a :class:`negd.rules.MinibatchNeuroevolution` ensemble sees the same batch sequence,
realization by realization. Its constructor from a neuroevolution rule is
:func:`negd.twins.minibatch_twin`: normalized SGD (alpha = sigma/sqrt(2 pi)) at beta = inf, Langevin
SGD (alpha = beta sigma^2/2) at finite beta.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate, value_and_grad
from negd.losses.minibatch import step_loss
from negd.state import State, init_state
from negd.twins.gradient import GradientDescent, Langevin, NormalizedGradientDescent, _as
from negd.validation import NegdError

__all__ = ["MinibatchGradient"]


@dataclass(frozen=True)
class MinibatchGradient:
    """A gradient rule (``base``) whose gradient at step t is that of step t's batches: SGD."""

    base: GradientDescent | Langevin | NormalizedGradientDescent

    def __post_init__(self) -> None:
        if not isinstance(self.base, GradientDescent | Langevin | NormalizedGradientDescent):
            raise NegdError(f"base: must be a GradientDescent, Langevin or NormalizedGradientDescent "
                            f"rule, got {type(self.base).__name__}")

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        state = init_state(params, torch.zeros(params.shape[0]), seed=seed, realization=realization)
        return state.replace(loss=evaluate(step_loss(loss_fn, state), params))

    def step(self, state: State, loss_fn: LossFn) -> State:
        batch_loss = step_loss(loss_fn, state)
        _, grad = value_and_grad(batch_loss, state.params)
        base = self.base
        params = state.params - _as(base.alpha, state.params) * base.direction(grad)
        if not (isinstance(base.noise, float) and base.noise == 0.0):
            xi = rng.normal(state.seed, state.realization, state.step, state.n_params,
                            stream=rng.STREAM_LANGEVIN).to(params.dtype)
            params = params + _as(base.noise, params) * xi
        params = params.detach()
        # The loss kept is that of the new parameters on this step's batch (one more forward pass).
        return state.replace(params=params, loss=evaluate(batch_loss, params), step=state.step + 1,
                             accepted=torch.ones_like(state.accepted))
