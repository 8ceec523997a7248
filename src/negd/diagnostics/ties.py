"""Ties: how often a mutation leaves a piecewise-constant loss exactly unchanged.

A greedy discrete policy (CartPole's argmax) makes U(x) flat almost everywhere: a mutation small
enough not to change any action on any played state gives dU == 0 exactly. Neuroevolution accepts
such a tie at every beta (min(1, exp(0)) = 1), so where most proposals tie the run is a random walk
on a plateau, not a descent, and the correspondence with gradient descent (Whitelam et al., Nat.
Commun. 12, 6317 (2021)) has nothing to act on: there is no gradient. This module measures it:

* :func:`tie_fraction`: the fraction t of ``probes`` probe mutations sigma xi (stream
  ``STREAM_PROBE`` of :mod:`negd.rng`, never those of a run) with dU == 0, per realization, with its
  binomial standard error sqrt(t (1 - t)/probes) (0 when t is 0 or 1: then a bound of 3/probes,
  the "rule of three", is reported as the SE);
* :func:`tie_scan`: t over a grid of sigma, and the smallest sigma of the grid at which at most
  :data:`TIE_FRACTION_MAX` of the proposals tie (the scale at which the loss resolves the moves),
  with a one-line message that a report prints instead of showing a silent plateau.

Runs count their own ties (``State.tied``, tallied by :func:`negd.engine.advance_tallied`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.validation import NegdError, check_int, check_positive

__all__ = ["TIE_FRACTION_MAX", "TieScan", "tie_fraction", "tie_scan"]

TIE_FRACTION_MAX = 0.5


def tie_fraction(loss_fn: LossFn, params: Tensor, sigma: float, *, probes: int = 64, seed: int = 0
                 ) -> tuple[Tensor, Tensor]:
    """(tie fraction [R], its standard error [R]) of ``probes`` mutations of scale ``sigma`` at params."""
    params = as_ensemble_params(params, None if params.dim() == 2 else 1)
    sigma = check_positive("sigma", sigma)
    probes = check_int("probes", probes)
    r, n = params.shape
    ids = torch.arange(r, dtype=torch.int64).repeat(probes)
    steps = torch.arange(probes, dtype=torch.int64).repeat_interleave(r)
    xi = rng.normal(seed, ids, steps, n, stream=rng.STREAM_PROBE).to(device=params.device)
    moved = params.repeat(probes, 1) + (xi * sigma).to(params.dtype)
    base = evaluate(loss_fn, params)
    new = evaluate(loss_fn, moved).view(probes, r)
    tied = (new == base).to(torch.float64)  # NaN never ties
    t = tied.mean(dim=0).cpu()
    se = torch.sqrt(t * (1 - t) / probes)
    return t, torch.where(se > 0, se, torch.full_like(se, 3 / probes))


@dataclass(frozen=True)
class TieScan:
    """Tie fractions over a sigma grid: ``fraction`` and ``se`` [S, R], ``resolving_sigma`` (None when
    no sigma of the grid resolves), and a one-line ``message``."""

    sigmas: tuple[float, ...]
    fraction: Tensor
    se: Tensor
    resolving_sigma: float | None
    message: str

    def to_dict(self) -> dict:
        return {"sigmas": list(self.sigmas), "tie_fraction": self.fraction.mean(dim=1).tolist(),
                "tie_fraction_se": (self.se.pow(2).mean(dim=1).sqrt() / math.sqrt(self.se.shape[1])).tolist(),
                "resolving_sigma": self.resolving_sigma, "message": self.message}


def tie_scan(loss_fn: LossFn, params: Tensor, sigmas: list[float] | tuple[float, ...], *, probes: int = 64,
             seed: int = 0, at_sigma: float | None = None) -> TieScan:
    """:func:`tie_fraction` at each sigma of ``sigmas`` (ascending); ``at_sigma``: the run's sigma,
    named in the message."""
    if not sigmas:
        raise NegdError("sigmas: need at least one mutation scale")
    sigmas = tuple(sorted(check_positive("sigmas", s) for s in sigmas))
    rows = [tie_fraction(loss_fn, params, s, probes=probes, seed=seed) for s in sigmas]
    fraction, se = torch.stack([f for f, _ in rows]), torch.stack([e for _, e in rows])
    mean = fraction.mean(dim=1)
    resolving = next((s for s, m in zip(sigmas, mean.tolist()) if m <= TIE_FRACTION_MAX), None)
    where = at_sigma if at_sigma is not None else sigmas[0]
    at = min(range(len(sigmas)), key=lambda i: abs(math.log(sigmas[i] / where)))
    head = (f"ties: at sigma = {sigmas[at]:.3g}, {100 * float(mean[at]):.3g}% of proposals leave the loss "
            f"exactly unchanged")
    if float(mean[at]) <= TIE_FRACTION_MAX:
        message = head + " (the loss resolves the moves)"
    elif resolving is None:
        message = (head + f": a plateau, accepted ties are a random walk there; no sigma up to "
                   f"{sigmas[-1]:.3g} brings ties to {100 * TIE_FRACTION_MAX:g}% or below")
    else:
        message = (head + f": a plateau, accepted ties are a random walk there; sigma >= {resolving:.3g} "
                   f"resolves it (ties <= {100 * TIE_FRACTION_MAX:g}%)")
    return TieScan(sigmas, fraction, se, resolving, message)
