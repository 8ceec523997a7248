"""Moment-matched Langevin: the gradient twin of neuroevolution at any z = beta sigma |grad U|.

Whitelam, Selin, Park & Tamblyn (Nat. Commun. 12, 6317 (2021)) show that neuroevolution is
Langevin dynamics (learning rate beta sigma^2/2, noise sigma) when z = beta sigma |g| << 1, and
normalized gradient descent (rate sigma/sqrt(2 pi), noise sigma/sqrt 2) when z -> inf. For a
locally linear loss the mean and spread of one neuroevolution step are known exactly for every z
(:mod:`negd.theory`, the ``linear_*`` functions)::

    <dx>      = -(beta sigma^2/2) erfcx(z/sqrt 2) g          (-> -(sigma/sqrt(2 pi)) g/|g| at beta = inf)
    <dx_i^2>  = A(z) sigma^2 across g,  A(z) = 1/2 + erfcx(z/sqrt 2)/2   (the acceptance)

This rule moves with those moments, z taken per realization from its own gradient at each step::

    x <- x - tau (beta sigma^2/2) erfcx(z/sqrt 2) g + sqrt(tau A(z)) sigma xi,   xi ~ N(0, I)

with ``time_step`` tau the neuroevolution steps one step of this rule stands for (1/lambda in the
experiments, where one NE step is lambda gradient steps). Both limits are the usual twins
(negd.twins.gradient_twin); in between, where 0.1 < z < 10 and the simple limits fail, it keeps
tracking neuroevolution as long as the loss is linear on the scale of one mutation (curvature
parameter c small, negd.diagnostics.regime). Along g the second moment is M2(z) sigma^2 rather than
A(z) sigma^2
(negd.theory.linear_second_moment); this one direction out of N is not matched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng, theory
from negd.losses.base import LossFn, as_ensemble_params, value_and_grad
from negd.state import State, init_state
from negd.validation import NegdError, check_beta, check_positive

__all__ = ["MomentMatchedLangevin"]

@dataclass(frozen=True)
class MomentMatchedLangevin:
    """Langevin dynamics with neuroevolution's exact linear-loss drift and spread (module docstring)."""

    sigma: float
    beta: float = math.inf
    time_step: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.sigma, Tensor):
            raise NegdError("sigma: must be one positive number (per-parameter sigma is not supported "
                            "by the moment-matched twin)")
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))
        object.__setattr__(self, "beta", check_beta(self.beta))
        object.__setattr__(self, "time_step", check_positive("time_step", self.time_step))

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        loss, grad = value_and_grad(loss_fn, params)
        return init_state(params, loss, seed=seed, realization=realization, extras={"grad": grad})

    def drift_and_spread(self, grad: Tensor) -> tuple[Tensor, Tensor]:
        """Per NE step: the mean displacement [R, N] and A(z) [R, 1], in float64 (negd.theory)."""
        g = grad.to(torch.float64)
        z = theory.z_parameter(torch.linalg.vector_norm(g, dim=1, keepdim=True), self.sigma, self.beta)
        return theory.linear_mean_displacement(g, self.sigma, self.beta), theory.linear_acceptance(z)

    def step(self, state: State, loss_fn: LossFn) -> State:
        grad = state.extras.get("grad")
        if grad is None:  # e.g. a state made by another rule
            _, grad = value_and_grad(loss_fn, state.params)
        drift, acceptance = self.drift_and_spread(grad)
        xi = rng.normal(state.seed, state.realization, state.step, state.n_params,
                        stream=rng.STREAM_LANGEVIN).to(torch.float64)
        spread = self.sigma * torch.sqrt(self.time_step * acceptance)
        moved = state.params.to(torch.float64) + self.time_step * drift + spread * xi
        params = moved.to(state.params.dtype)
        loss, grad = value_and_grad(loss_fn, params)
        return state.replace(params=params.detach(), loss=loss, step=state.step + 1,
                             accepted=torch.ones_like(state.accepted), extras={**state.extras, "grad": grad})
