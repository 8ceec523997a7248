"""Neuroevolution by conditioned stochastic mutation.

Whitelam, Selin, Park & Tamblyn, "Correspondence between neuroevolution and gradient
descent", Nature Communications 12, 6317 (2021), steps 1-4 of their algorithm:

1. propose x' = x + sigma * xi, xi ~ N(0, I), a mutation of *every* parameter
   (sigma a scalar or one value per parameter, the paper's anisotropic sigma_i);
2. evaluate dU = U(x') - U(x) (one loss evaluation per step; losses in float64, whatever the
   parameter dtype, so that the test resolves the few-1e-8 dU of the paper's smallest mutations);
3. accept with probability min(1, exp(-beta dU)); at beta = inf accept iff dU <= 0
   (a move of exactly equal loss is accepted);
4. otherwise keep x.

A proposal whose loss is NaN or infinite is always rejected, and so is one that changes no
parameter (sigma below the resolution of the parameters' dtype). For small sigma the ensemble
follows dx/dt = -(beta sigma^2/2) grad U + noise (finite beta) or
dx/dt = -(sigma/sqrt(2 pi)) grad U/|grad U| + noise (beta = inf); see :mod:`negd.theory`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.state import State, init_state
from negd.validation import check_beta, check_sigma

__all__ = ["Neuroevolution", "metropolis_accept"]


def metropolis_accept(new_loss: Tensor, old_loss: Tensor, beta: float, uniforms: Tensor | None
                      ) -> Tensor:
    """The acceptance rule of step 3 as a boolean mask [R].

    A non-finite new loss is rejected; a non-finite old loss is left for any finite one.
    ``uniforms`` (in [0, 1)) are needed only for finite beta. The Metropolis test is done in
    float64: u < exp(-beta dU).
    """
    d_u = new_loss.to(torch.float64) - old_loss.to(torch.float64)
    finite_new = torch.isfinite(new_loss)
    downhill = (d_u <= 0) | ~torch.isfinite(old_loss)
    if math.isinf(beta):
        return finite_new & downhill
    assert uniforms is not None
    return finite_new & (downhill | (uniforms < torch.exp(-beta * d_u)))


@dataclass(frozen=True)
class Neuroevolution:
    """Conditioned stochastic mutation with scale ``sigma`` at inverse temperature ``beta``."""

    sigma: float | Tensor
    beta: float = math.inf

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", check_sigma(self.sigma))
        object.__setattr__(self, "beta", check_beta(self.beta))

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        check_sigma(self.sigma, params.shape[1])
        return init_state(params, evaluate(loss_fn, params), seed=seed, realization=realization)

    def mutation(self, state: State) -> Tensor:
        """sigma * xi for this step: [R, N], a pure function of (seed, realization, step)."""
        dtype = state.params.dtype
        xi = rng.normal(state.seed, state.realization, state.step, state.n_params).to(dtype)
        return xi * torch.as_tensor(self.sigma, dtype=dtype, device=xi.device)

    def step(self, state: State, loss_fn: LossFn) -> State:
        proposal = state.params + self.mutation(state)
        new_loss = evaluate(loss_fn, proposal)
        u = None
        if not math.isinf(self.beta):
            u = rng.uniform(state.seed, state.realization, state.step)
        # A proposal that rounds back to x (sigma below the dtype's resolution, e.g. 1e-30) is
        # not a move: it would be "accepted" at dU = 0 while nothing changes.
        moved = (proposal != state.params).any(dim=1)
        accept = metropolis_accept(new_loss, state.loss, self.beta, u) & moved
        return state.replace(
            params=torch.where(accept[:, None], proposal, state.params),
            loss=torch.where(accept, new_loss, state.loss),
            step=state.step + 1, accepted=accept, tied=new_loss == state.loss)
