"""The curvature-aware twin of beta = inf neuroevolution: normalized descent slowed by phi(c).

Where the curvature parameter c = sigma tr H/(2 |g|) is not small the paper's normalized twin
(drift -(sigma/sqrt(2 pi)) g/|g|) overestimates neuroevolution: for dU ~ sigma |g| (eta + c) the
beta = inf drift is -sigma phi(c) g/|g| (:func:`negd.theory.curvature_mean_displacement`). This rule
moves with that drift, c estimated along the way::

    x <- x - tau sigma phi(c(x)) g/|g|          (tau: NE steps per twin step)

With u = g/|g| the curvature along g itself barely shifts the acceptance (to first order the
threshold is eta < -c_perp - kappa eta^2, kappa = sigma u.H.u/(2|g|), whose drift is
phi(c_perp) + O(kappa c_perp^2)), so by default c is c_perp = sigma (tr H - u.H.u)/(2 |g|), as in
:func:`negd.diagnostics.regime.regime_check`; ``curvature="c"`` uses the full trace. tr(P H P) (P = I - u u^T)
is estimated by Hutchinson with ``n_probes`` Rademacher probes projected off u, every ``refresh``
steps; in between sigma tr(P H P)/2 is kept and divided by the current |g| (c ~ 1/|g| changes faster
than the trace). The probes are the signs of :func:`negd.rng.normal` in stream
:data:`STREAM_CURVATURE`, so a realization's probes do not depend on R or chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng, theory
from negd.losses.base import LossFn, as_ensemble_params, hessian_vector_products, value_and_grad
from negd.state import State, init_state
from negd.validation import NegdError, check_int, check_positive

__all__ = ["CurvatureAwareTwin", "STREAM_CURVATURE", "trace_term"]

STREAM_CURVATURE = rng.STREAM_CURVATURE  # every stream tag is defined in negd.rng


def _unit(grad: Tensor) -> tuple[Tensor, Tensor]:
    g = grad.to(torch.float64)
    norm = torch.linalg.vector_norm(g, dim=1, keepdim=True)
    return torch.where(norm > 0, g / norm.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(g)), norm


def trace_term(loss_fn: LossFn, state: State, grad: Tensor, sigma: float, n_probes: int,
               curvature: str) -> Tensor:
    """sigma tr(P H P)/2 (``"c_perp"``) or sigma tr H/2 (``"c"``) per realization [R], float64."""
    r, n = state.params.shape
    unit, _ = _unit(grad)
    xi = rng.normal(state.seed, state.realization, state.step, n_probes * n, stream=STREAM_CURVATURE)
    probes = torch.sign(xi).view(r, n_probes, n).transpose(0, 1).to(torch.float64)  # [K, R, N]
    probes = probes - (probes * unit).sum(-1, keepdim=True) * unit  # off u
    dtype = state.params.dtype
    hv = hessian_vector_products(loss_fn, state.params, probes.to(dtype)).to(torch.float64)
    trace = (probes * hv).sum(-1).mean(0)
    if curvature == "c":
        hu = hessian_vector_products(loss_fn, state.params, unit.to(dtype)[None])[0].to(torch.float64)
        trace = trace + (unit * hu).sum(-1)
    return sigma * trace / 2


@dataclass(frozen=True)
class CurvatureAwareTwin:
    """x <- x - tau sigma phi(c) g/|g|, c re-estimated every ``refresh`` steps (module docstring)."""

    sigma: float
    time_step: float = 1.0
    n_probes: int = 8
    refresh: int = 100
    curvature: str = "c_perp"

    def __post_init__(self) -> None:
        if isinstance(self.sigma, Tensor):
            raise NegdError("sigma: the curvature-aware twin needs one scalar sigma")
        object.__setattr__(self, "sigma", check_positive("sigma", self.sigma))
        object.__setattr__(self, "time_step", check_positive("time_step", self.time_step))
        object.__setattr__(self, "n_probes", check_int("n_probes", self.n_probes, 2))
        object.__setattr__(self, "refresh", check_int("refresh", self.refresh))
        if self.curvature not in ("c_perp", "c"):
            raise NegdError(f"curvature: must be 'c_perp' or 'c', got {self.curvature!r}")

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        loss, grad = value_and_grad(loss_fn, params)
        state = init_state(params, loss, seed=seed, realization=realization, extras={"grad": grad})
        return self._with_trace(state, loss_fn, grad)

    def _with_trace(self, state: State, loss_fn: LossFn, grad: Tensor) -> State:
        term = trace_term(loss_fn, state, grad, self.sigma, self.n_probes, self.curvature)
        return state.replace(extras={**state.extras, "grad": grad, "curvature_term": term})

    def c(self, state: State) -> Tensor:
        """The current c (or c_perp) of each realization [R]."""
        _, norm = _unit(state.extras["grad"])
        return state.extras["curvature_term"] / norm[:, 0]

    def step(self, state: State, loss_fn: LossFn) -> State:
        if "grad" not in state.extras or "curvature_term" not in state.extras:
            _, grad = value_and_grad(loss_fn, state.params)
            state = self._with_trace(state, loss_fn, grad)
        unit, norm = _unit(state.extras["grad"])
        c = torch.where(norm[:, 0] > 0, state.extras["curvature_term"] / norm[:, 0].clamp_min(1e-300),
                        torch.zeros_like(norm[:, 0]))
        rate = self.time_step * self.sigma * theory.normal_pdf(c)  # [R]
        params = (state.params.to(torch.float64) - rate[:, None] * unit).to(state.params.dtype)
        loss, grad = value_and_grad(loss_fn, params)
        new = state.replace(params=params.detach(), loss=loss, step=state.step + 1,
                            accepted=torch.ones_like(state.accepted),
                            extras={**state.extras, "grad": grad})
        if new.step % self.refresh == 0:
            new = self._with_trace(new, loss_fn, grad)
        return new

    @property
    def normalized_rate(self) -> float:
        """The c = 0 rate tau sigma/sqrt(2 pi): the paper's normalized twin."""
        return self.time_step * self.sigma / math.sqrt(2 * math.pi)
