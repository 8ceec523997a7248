"""Mean-field gradient twin of adaptive Monte Carlo (:class:`negd.rules.AdaptiveMC`) at beta = inf.

One aMC step proposes d = mu + sigma xi and accepts iff U(x + d) <= U(x); on acceptance
mu <- mu + epsilon (d - mu) = mu + epsilon sigma xi. Expand the loss around the look-ahead point
x + mu: U(x + d) - U(x) = b + sigma g'.xi + O(sigma^2 xi.H.xi), with g' = grad U(x + mu) and
b = U(x + mu) - U(x). Then dU is Gaussian with mean b (+ sigma^2 tr H/2 from the curvature, left out
here, see below) and spread sigma |g'|, and with u' = g'/|g'| and m = b/(sigma |g'|) (Gaussian
integrals as in :mod:`negd.theory`):

* acceptance                 Phi(-m);
* mean displacement   E[dx]  = Phi(-m) mu - sigma phi(m) u';
* mean change of mu   E[dmu] = epsilon sigma E[xi; accepted] = -epsilon sigma phi(m) u'.

At mu = 0 this is the paper's twin (drift -sigma phi(0) u). Otherwise it is normalized gradient
descent taken at the look-ahead point x + mu (a Nesterov-like momentum): mu accumulates the
normalized gradient at rate epsilon sigma phi(m) with no decay of its own; what limits it is the
loss itself (when U(x + mu) rises above U(x), m > 0 and the move by mu is mostly refused). For a
linear loss m = u.mu/sigma goes to -inf like -sqrt(2 ln(epsilon t)): aMC then moves faster than NE by
|m| Phi(|m|) + phi(m) over phi(0).

This rule iterates those means deterministically (one gradient at x + mu and one loss at the new x
per step). Left out: the sigma^2 tr H/2 shift of b (c, as for the paper's rule), the shrinking of
sigma after ``n_reset`` rejections, and above all the spread of mu over realizations: since
mu <- mu + epsilon sigma xi on acceptance, its components across g' perform an unbiased random walk
(variance epsilon^2 sigma^2 per accepted move, no restoring force but the loss), so each realization
soon carries a persistent random direction that the mean field does not have. Measured on the
shallow task (docs/variants.md) this twin is much slower than the aMC ensemble: the mean-field
picture explains the momentum, not the speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from negd import theory
from negd.losses.base import LossFn, as_ensemble_params, evaluate, value_and_grad
from negd.state import State, init_state
from negd.validation import NegdError, check_amc_hyperparameters, check_positive

__all__ = ["AdaptiveMCTwin", "amc_mean_step"]


def amc_mean_step(mu: Tensor, look_loss: Tensor, loss: Tensor, look_grad: Tensor, sigma: float,
                  epsilon: float) -> tuple[Tensor, Tensor, Tensor]:
    """(E[dx], E[dmu], acceptance) of one aMC step, float64 (module docstring)."""
    g = look_grad.to(torch.float64)
    norm = torch.linalg.vector_norm(g, dim=1, keepdim=True)
    unit = torch.where(norm > 0, g / norm.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g))
    shift = (look_loss.to(torch.float64) - loss.to(torch.float64))[:, None]
    m = torch.where(norm > 0, shift / (sigma * norm.clamp_min(torch.finfo(g.dtype).tiny)),
                    torch.zeros_like(shift))
    accept = theory.normal_cdf(-m)
    pull = sigma * theory.normal_pdf(m) * unit
    return accept * mu.to(torch.float64) - pull, -epsilon * pull, accept[:, 0]


@dataclass(frozen=True)
class AdaptiveMCTwin:
    """Deterministic mean-field aMC (module docstring); ``sigma`` and ``epsilon`` as for AdaptiveMC."""

    sigma: float
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.sigma, Tensor):
            raise NegdError("sigma: the aMC twin needs one scalar sigma")
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))
        eps, _, _ = check_amc_hyperparameters(self.epsilon, 1, 0.5)
        object.__setattr__(self, "epsilon", eps)

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        return init_state(params, evaluate(loss_fn, params), seed=seed, realization=realization,
                          extras={"amc_mu": torch.zeros_like(params)})

    def step(self, state: State, loss_fn: LossFn) -> State:
        mu = state.extras["amc_mu"]
        look_loss, look_grad = value_and_grad(loss_fn, state.params + mu)
        dx, dmu, _ = amc_mean_step(mu, look_loss, state.loss, look_grad, self.sigma, self.epsilon)
        dtype = state.params.dtype
        params = (state.params.to(torch.float64) + dx).to(dtype)
        return state.replace(params=params, loss=evaluate(loss_fn, params), step=state.step + 1,
                             accepted=torch.ones_like(state.accepted),
                             extras={**state.extras, "amc_mu": (mu.to(torch.float64) + dmu).to(dtype)})
