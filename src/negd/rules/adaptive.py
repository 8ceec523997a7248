"""Adaptive Monte Carlo (aMC): neuroevolution whose mutations learn a mean and shrink their scale.

Whitelam, Selin, Benlolo, Casert & Tamblyn, "Training neural networks using Metropolis Monte Carlo
and an adaptive variant", Mach. Learn.: Sci. Technol. 3, 045026 (2022). Per realization, with
adaptive mean mu [N] (starts at 0) and scale sigma (starts at ``sigma``):

1. propose x' = x + d, d = mu + sigma xi, xi ~ N(0, I) (d_i ~ N(mu_i, sigma^2) per parameter);
2. accept by the Metropolis test of :func:`negd.rules.metropolis_accept` (beta = inf, the paper's
   zero temperature: iff U(x') <= U(x)); a non-finite loss is never accepted;
3. on acceptance mu <- mu + epsilon (d - mu) (mu is a running average of accepted moves);
4. after ``n_reset`` consecutive rejections sigma <- shrink * sigma (0.95 in the paper), mu <- 0,
   and the count starts again.

With mu = 0 and no shrink (n_reset never reached) this is :class:`negd.rules.Neuroevolution`: the
normals are the same ones (stream ``STREAM_MUTATION``), so step 0 of both rules is identical.
Per-realization state lives in ``State.extras``: ``amc_mu`` [R, N] (params' dtype), ``amc_sigma``
[R] (float64) and ``amc_rejections`` [R] (int64). The torch optimizer
:class:`negd.optim.AdaptiveMC` uses :func:`amc_mutation` and :func:`amc_update`, so that
with R = 1 both take the same trajectory. The twin (docs/variants.md): while sigma is fixed, the
mean displacement is -sigma phi(c') u' with the mutation centred at mu, i.e. normalized gradient
descent along the gradient plus the momentum-like memory mu (an exponential average, rate epsilon,
of accepted steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.rules.neuroevolution import metropolis_accept
from negd.state import State, init_state
from negd.validation import NegdError, check_amc_hyperparameters, check_beta, check_positive

__all__ = ["AdaptiveMC", "amc_mutation", "amc_update"]


def amc_mutation(xi: Tensor, mu: Tensor, sigma: float | Tensor) -> Tensor:
    """d = mu + sigma xi: sigma xi in float32 (as Neuroevolution.mutation), then in mu's dtype.

    ``sigma``: a float, or [R, 1] for one scale per realization.
    """
    s = torch.as_tensor(sigma, dtype=torch.float32, device=xi.device)
    return mu + (xi * s).to(mu.dtype)


def amc_update(mu: Tensor, mutation: Tensor, epsilon: float) -> Tensor:
    """mu + epsilon (d - mu): the mean after an accepted move d."""
    return mu + epsilon * (mutation - mu)


@dataclass(frozen=True)
class AdaptiveMC:
    """aMC with initial scale ``sigma``, mean rate ``epsilon``, shrink ``shrink`` after ``n_reset``
    consecutive rejections, inverse temperature ``beta`` (module docstring)."""

    sigma: float
    epsilon: float = 0.1
    n_reset: int = 100
    shrink: float = 0.95
    beta: float = math.inf

    def __post_init__(self) -> None:
        if isinstance(self.sigma, Tensor) and self.sigma.numel() != 1:
            raise NegdError("sigma: aMC has one scale per realization; per-parameter sigma is not supported")
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))
        eps, n_reset, shrink = check_amc_hyperparameters(self.epsilon, self.n_reset, self.shrink)
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "n_reset", n_reset)
        object.__setattr__(self, "shrink", shrink)
        object.__setattr__(self, "beta", check_beta(self.beta))

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        r = params.shape[0]
        extras = {"amc_mu": torch.zeros_like(params),
                  "amc_sigma": torch.full((r,), self.sigma, dtype=torch.float64, device=params.device),
                  "amc_rejections": torch.zeros(r, dtype=torch.int64, device=params.device)}
        return init_state(params, evaluate(loss_fn, params), seed=seed, realization=realization,
                          extras=extras)

    def step(self, state: State, loss_fn: LossFn) -> State:
        mu, sigma = state.extras["amc_mu"], state.extras["amc_sigma"]
        xi = rng.normal(state.seed, state.realization, state.step, state.n_params)
        mutation = amc_mutation(xi, mu, sigma[:, None])
        proposal = state.params + mutation
        new_loss = evaluate(loss_fn, proposal)
        u = None if math.isinf(self.beta) else rng.uniform(state.seed, state.realization, state.step)
        accept = metropolis_accept(new_loss, state.loss, self.beta, u)

        mu = torch.where(accept[:, None], amc_update(mu, mutation, self.epsilon), mu)
        rejections = torch.where(accept, torch.zeros_like(state.extras["amc_rejections"]),
                                 state.extras["amc_rejections"] + 1)
        reset = rejections >= self.n_reset
        sigma = torch.where(reset, sigma * self.shrink, sigma)
        mu = torch.where(reset[:, None], torch.zeros_like(mu), mu)
        rejections = torch.where(reset, torch.zeros_like(rejections), rejections)
        return state.replace(
            params=torch.where(accept[:, None], proposal, state.params),
            loss=torch.where(accept, new_loss.to(state.loss.dtype), state.loss),
            step=state.step + 1, accepted=accept,
            extras={**state.extras, "amc_mu": mu, "amc_sigma": sigma, "amc_rejections": rejections})
