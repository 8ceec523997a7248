"""Gradient dynamics: the deterministic and stochastic twins of neuroevolution.

* :class:`GradientDescent`: x <- x - alpha grad U;
* :class:`Langevin`: x <- x - alpha grad U + s xi, xi ~ N(0, I) (Euler-Maruyama; with
  alpha = beta sigma^2/2 and s = sigma its stationary law is proportional to exp(-beta U));
* :class:`NormalizedGradientDescent`: x <- x - alpha grad U/|grad U| (+ s xi), with |.| the
  Euclidean norm over all parameters of one realization (the paper's "clipped" descent).

``alpha`` and ``s`` may be scalars or one value per parameter. With per-parameter ``weights``
w, the normalized direction is w^2 g/|w g|, the beta = inf limit for anisotropic mutation
scales sigma_i = w_i (Whitelam et al. 2021).

The gradient of the current parameters is cached in ``state.extras["grad"]``, so that
``state.loss`` is always the loss of ``state.params`` and one step costs one forward and one
backward evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, value_and_grad
from negd.state import State, init_state
from negd.validation import NegdError, check_finite, check_nonnegative, check_positive

__all__ = ["GradientDescent", "Langevin", "NormalizedGradientDescent"]


def _check_rate(name: str, value: float | Tensor, positive: bool = True) -> float | Tensor:
    if isinstance(value, Tensor) and value.numel() > 1:
        if value.dim() != 1:
            raise NegdError(f"{name}: per-parameter values must be a 1-D tensor [N]")
        check_finite(name, value)
        if bool((value < 0).any()) or (positive and bool((value == 0).all())):
            raise NegdError(f"{name}: entries must be >= 0 (and not all zero)")
        return value
    if isinstance(value, Tensor):
        value = value.item()
    return check_positive(name, value) if positive else check_nonnegative(name, value)


def _as(value: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class _GradientRule:
    """Shared init/step; subclasses define the drift direction per unit rate."""

    alpha: float | Tensor
    noise: float | Tensor = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", _check_rate("alpha", self.alpha))
        object.__setattr__(self, "noise", _check_rate("noise", self.noise, positive=False))

    def direction(self, grad: Tensor) -> Tensor:
        raise NotImplementedError

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        for name in ("alpha", "noise"):
            v = getattr(self, name)
            if isinstance(v, Tensor) and v.numel() > 1 and v.shape[0] != params.shape[1]:
                raise NegdError(f"{name}: has {v.shape[0]} entries but params have "
                                f"{params.shape[1]}")
        loss, grad = value_and_grad(loss_fn, params)
        return init_state(params, loss, seed=seed, realization=realization,
                          extras={"grad": grad})

    def step(self, state: State, loss_fn: LossFn) -> State:
        grad = state.extras.get("grad")
        if grad is None:  # e.g. a state made by another rule
            _, grad = value_and_grad(loss_fn, state.params)
        params = state.params - _as(self.alpha, state.params) * self.direction(grad)
        if not (isinstance(self.noise, float) and self.noise == 0.0):
            xi = rng.normal(state.seed, state.realization, state.step, state.n_params,
                            stream=rng.STREAM_LANGEVIN).to(params.dtype)
            params = params + _as(self.noise, params) * xi
        loss, grad = value_and_grad(loss_fn, params)
        return state.replace(params=params.detach(), loss=loss, step=state.step + 1,
                             accepted=torch.ones_like(state.accepted),
                             extras={**state.extras, "grad": grad})


@dataclass(frozen=True)
class GradientDescent(_GradientRule):
    """x <- x - alpha grad U (+ noise * xi)."""

    def direction(self, grad: Tensor) -> Tensor:
        return grad


@dataclass(frozen=True)
class Langevin(_GradientRule):
    """x <- x - alpha grad U + noise * xi; ``noise`` is required (> 0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "noise", _check_rate("noise", self.noise))

    def direction(self, grad: Tensor) -> Tensor:
        return grad


@dataclass(frozen=True)
class NormalizedGradientDescent(_GradientRule):
    """x <- x - alpha w^2 g/|w g| (+ noise * xi); w = 1 gives alpha g/|g|."""

    weights: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.weights
        if w is not None:
            if not isinstance(w, Tensor) or w.dim() != 1:
                raise NegdError("weights: must be a 1-D tensor [N] of positive numbers")
            if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
                raise NegdError("weights: every entry must be a positive finite number")

    def init(self, params: Tensor, loss_fn: LossFn, **kw) -> State:
        state = super().init(params, loss_fn, **kw)
        if self.weights is not None and self.weights.shape[0] != state.n_params:
            raise NegdError(f"weights: has {self.weights.shape[0]} entries but params have "
                            f"{state.n_params}")
        return state

    def direction(self, grad: Tensor) -> Tensor:
        w = None if self.weights is None else _as(self.weights, grad)
        scaled = grad if w is None else grad * w
        norm = torch.linalg.vector_norm(scaled, dim=1, keepdim=True)
        # A zero gradient has no direction: no drift rather than 0/0.
        unit = torch.where(norm > 0, scaled / norm.clamp_min(torch.finfo(grad.dtype).tiny),
                           torch.zeros_like(scaled))
        return unit if w is None else unit * w
