"""Argument checks that fail with one clear line naming the argument and what is allowed."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

__all__ = ["NegdError", "check_positive", "check_beta", "check_int", "check_sigma", "check_finite",
           "check_data", "warn_if_sigma_unresolved", "check_amc_hyperparameters", "first_line"]


class NegdError(ValueError):
    """A bad argument or configuration; the message names the field and what is allowed."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a one-line
    error quotes of a failure inside user code."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def check_positive(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise NegdError(f"{name}: must be a positive finite number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise NegdError(f"{name}: must be a positive finite number, got {value!r}")
    return v


def check_nonnegative(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise NegdError(f"{name}: must be a finite number >= 0, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise NegdError(f"{name}: must be a finite number >= 0, got {value!r}")
    return v


def check_beta(value: float) -> float:
    """Inverse temperature: a number > 0, or ``inf`` for zero temperature."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise NegdError(f"beta: must be a number > 0 or inf, got {value!r}") from None
    if math.isnan(v) or v <= 0:
        raise NegdError(f"beta: must be a number > 0 or inf, got {value!r}")
    return v


def check_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise NegdError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise NegdError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_sigma(value: float | Tensor, n_params: int | None = None) -> float | Tensor:
    """Mutation scale: a positive scalar, or a tensor of N positive entries (one per parameter)."""
    if isinstance(value, Tensor) and value.numel() != 1:
        if value.dim() != 1 or (n_params is not None and value.shape[0] != n_params):
            want = f"[{n_params}]" if n_params is not None else "[N]"
            raise NegdError(f"sigma: per-parameter sigma must have shape {want}, got "
                            f"{list(value.shape)}")
        if not bool(torch.isfinite(value).all()) or bool((value <= 0).any()):
            raise NegdError("sigma: every entry must be a positive finite number")
        return value
    if isinstance(value, Tensor):
        value = value.item()
    return check_positive("sigma", value)


def check_finite(name: str, t: Tensor) -> Tensor:
    if not bool(torch.isfinite(t).all()):
        raise NegdError(f"{name}: contains NaN or infinite values")
    return t


def check_data(name: str, data: object) -> Tensor:
    """A data tensor [P, ...] of a loss: a tensor with at least one example (P >= 1) and, if it
    holds floating-point values, only finite ones. An empty or non-finite data set makes every loss
    NaN: a run that never moves (a NaN loss is never accepted) and reports nothing."""
    if not isinstance(data, Tensor):
        raise NegdError(f"{name}: must be a tensor [P, ...], got {type(data).__name__}")
    if data.dim() < 1 or data.shape[0] < 1 or data.numel() == 0:
        raise NegdError(f"{name}: must hold at least one example (shape [P, ...], P >= 1, no empty "
                        f"dimension), got shape {list(data.shape)}")
    if data.is_floating_point() or data.is_complex():
        bad = ~torch.isfinite(data)
        if bool(bad.any()):
            nans = int(torch.isnan(data).sum())
            first = [int(i) for i in bad.nonzero()[0]]
            raise NegdError(f"{name}: must be finite, got {nans} NaN and {int(bad.sum()) - nans} infinite "
                            f"values (the first at index {first})")
    return data


def warn_if_sigma_unresolved(params: Tensor, sigma: float | Tensor, where: str = "params",
                             stacklevel: int = 3) -> None:
    """Warn when half-precision parameters cannot resolve mutations of scale ``sigma``: x + sigma xi
    rounds back to x where sigma is below half the dtype's spacing at |x|, and such "moves" are
    accepted (dU = 0) while nothing changes."""
    if params.dtype not in (torch.bfloat16, torch.float16) or params.numel() == 0:
        return
    typical = float(params.detach().abs().float().median())
    spacing = typical * torch.finfo(params.dtype).eps
    largest = float(sigma.max()) if isinstance(sigma, Tensor) else float(sigma)
    if largest < spacing:
        dtype = str(params.dtype).removeprefix("torch.")
        warnings.warn(f"negd: {where} are {dtype} (spacing {spacing:.2g} at their median |x| = "
                      f"{typical:.2g}); most mutations of sigma = {largest:g} round away: use float32 "
                      f"parameters or a larger sigma", RuntimeWarning, stacklevel=stacklevel)


def check_amc_hyperparameters(epsilon: float, n_reset: int, shrink: float) -> tuple[float, int, float]:
    """Validate (epsilon in [0, 1], n_reset >= 1, shrink in (0, 1)); one-line NegdError otherwise.

    epsilon = 0 keeps mu = 0 (no memory: Metropolis with the adaptive sigma alone), the default of the
    authors' own aMC code (Whitelam et al.'s recurrent-network example)."""
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 <= epsilon <= 1:
        raise NegdError(f"epsilon: must be a number in [0, 1] (the weight of a new accepted move in mu), got "
                        f"{epsilon!r}")
    eps = float(epsilon)
    shrink_v = check_positive("shrink", shrink)
    if shrink_v >= 1:
        raise NegdError(f"shrink: must be in (0, 1) (sigma <- shrink sigma), got {shrink!r}")
    return eps, check_int("n_reset", n_reset), shrink_v
