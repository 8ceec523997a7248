"""Loss resolution: can the numbers tell dU = U(x + sigma xi) - U(x) apart from zero?

The Metropolis test of neuroevolution (Whitelam et al., Nat. Commun. 12, 6317 (2021)) is only as
good as the dU it compares. For a locally linear loss dU ~ N(0, s^2) with s = sigma |grad U|; at
the paper's smallest mutations (sigma = 6e-7 to 2.5e-6, |grad U| ~ 0.2) s is a few 1e-8, about one
float32 unit of U ~ 0.3. Two kinds of rounding enter:

* the loss: a computed dU carries an error e (rounding of the forward pass and of the stored
  loss). With dU and the error independent Gaussians, the sign of dU, hence the decision at
  beta = inf, flips with probability

      P_flip = arctan(e / s) / pi                                         (1)

  (a float32 loss stored as U ~ 0.3 has e ~ ulp(U)/sqrt(6) ~ 1.2e-8; a float32 forward pass
  summed in float64 has e ~ 1e-9, measured by :func:`loss_rounding`). Exact ties dU == 0 are the
  visible part of it: they are counted in every run.
* the parameters: x + sigma xi is rounded to the parameter dtype, so each coordinate of the move
  carries a uniform error of rms ulp(x_i)/sqrt(12). Relative to sigma that is the quantization

      q = sqrt(mean_i ulp(x_i)^2 / 12) / sigma                            (2)

  (float32 parameters near 1 at sigma = 6e-7: q = 6%, the moves are not the paper's Gaussians).

:func:`assess` turns e, s and the parameters into these numbers; a decision risk above
``DECISION_RISK_MAX`` (0.5% of decisions) or a quantization above ``QUANTIZATION_MAX`` (1%) means
the run does not compute the paper's dynamics, and the message says what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng

__all__ = ["DECISION_RISK_MAX", "QUANTIZATION_MAX", "Resolution", "ulp", "flip_probability",
           "quantization", "loss_rounding", "assess"]

DECISION_RISK_MAX = 0.005
QUANTIZATION_MAX = 0.01


def ulp(x: Tensor) -> Tensor:
    """The spacing of floating-point numbers at |x| in x's dtype (unit in the last place)."""
    a = x.abs()
    return torch.nextafter(a, torch.full_like(a, math.inf)) - a


def flip_probability(error: Tensor | float, spread: Tensor | float) -> Tensor:
    """Equation (1): P(sign(dU + e) != sign(dU)) for independent dU ~ N(0, spread^2), e ~ N(0, error^2)."""
    error = torch.as_tensor(error, dtype=torch.float64)
    spread = torch.as_tensor(spread, dtype=torch.float64)
    return torch.atan2(error, spread) / math.pi


def quantization(params: Tensor, sigma: float | Tensor) -> Tensor:
    """Equation (2) per realization [R]: rms rounding of a move x + sigma xi over sigma."""
    params = params if params.dim() == 2 else params[None]
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=params.device)
    step = ulp(params).to(torch.float64) / sigma
    return torch.sqrt((step * step).mean(dim=1) / 12)


def loss_rounding(loss_fn, params: Tensor, sigma: float | Tensor, *, n_probes: int = 8, seed: int = 0
                  ) -> tuple[Tensor, Tensor]:
    """Measured rounding error of dU at ``params`` [R, N]: (rms error [R], rms dU [R]).

    Draws ``n_probes`` mutations sigma xi (stream STREAM_PROBE of :mod:`negd.rng`), rounds each
    proposal to the parameter dtype as a run does, and compares the dU that ``loss_fn`` computes
    there with the dU of the same two points computed in float64 (the parameters cast to float64,
    so a float32 forward pass becomes a float64 one). The rounding of the returned loss to its
    dtype is added in quadrature (two losses, each off by a uniform +-ulp(U)/2: rms ulp(U)/sqrt(6)),
    so a float32 loss is charged its unit even where both evaluations round alike. NaN where
    ``loss_fn`` cannot evaluate float64 parameters, and the spread NaN where every probe is an exact
    tie in both dtypes (a plateau: no decision there for rounding to flip).
    """
    r, n = params.shape
    sigma_t = torch.as_tensor(sigma, dtype=params.dtype, device=params.device)
    steps = torch.arange(n_probes, dtype=torch.int64)
    ids = torch.arange(r, dtype=torch.int64).repeat(n_probes)
    xi = rng.normal(seed, ids, steps.repeat_interleave(r), n, stream=rng.STREAM_PROBE).to(params.device)
    base = params.repeat(n_probes, 1)
    moved = base + xi.to(params.dtype) * sigma_t
    both = torch.cat([params, moved])
    with torch.no_grad():
        working = loss_fn(both)
        try:
            reference = loss_fn(both.to(torch.float64))
        except Exception:  # noqa: BLE001 - a loss that only runs in its own dtype: error unmeasured
            nan = torch.full((r,), math.nan, dtype=torch.float64)
            return nan, nan
    stored_unit = ulp(working[:r]).to(torch.float64)
    working, reference = working.to(torch.float64), reference.to(torch.float64)
    du_work = working[r:].view(n_probes, r) - working[:r]
    du_ref = reference[r:].view(n_probes, r) - reference[:r]
    error = torch.sqrt(((du_work - du_ref) ** 2).mean(dim=0) + stored_unit ** 2 / 6)
    spread = torch.sqrt((du_ref ** 2).mean(dim=0))
    # every probe an exact tie in both computations (a plateau of a piecewise-constant loss, e.g. a
    # greedy policy's return): there is no dU to flip, and (1) has no spread to compare with:
    # unmeasured (NaN), not a 50% risk; the tie fraction reports the plateau
    plateau = ((du_ref == 0) & (du_work == 0)).all(dim=0)
    spread = torch.where(plateau, torch.full_like(spread, math.nan), spread)
    return error.cpu(), spread.cpu()


@dataclass(frozen=True)
class Resolution:
    """How well a run resolves its moves, per realization [R] (module docstring).

    loss_error e (rms rounding error of dU), spread s = sigma |grad U|, loss_ratio s / e,
    decision_risk P_flip of (1), quantization q of (2), param_ratio = 1/(sqrt(12) q) (sigma in rms
    units of the parameters' last place), ok (both below their limits) and a one-line message.
    """

    loss_error: Tensor
    spread: Tensor
    decision_risk: Tensor
    quantization: Tensor
    ok: Tensor
    message: str

    @property
    def loss_ratio(self) -> Tensor:
        """sigma |grad U| over the rounding error of dU."""
        return self.spread / self.loss_error

    @property
    def param_ratio(self) -> Tensor:
        """sigma in rms units of the parameters' last place, 1/(sqrt(12) q)."""
        return 1 / (math.sqrt(12) * self.quantization)


def assess(loss_error: Tensor, spread: Tensor, quant: Tensor, dtype: torch.dtype | None = None) -> Resolution:
    """Decision risk and quantization against their limits, with advice when they fail."""
    loss_error, spread, quant = (torch.as_tensor(v, dtype=torch.float64) for v in (loss_error, spread, quant))
    risk = flip_probability(loss_error, spread)
    risk_ok = ~(risk > DECISION_RISK_MAX)  # NaN (unmeasured) is not flagged
    quant_ok = quant <= QUANTIZATION_MAX
    problems = []
    if not bool(risk_ok.all()):
        worst = float(risk[~risk_ok].max())
        problems.append(f"loss rounding can change {100 * worst:.2g}% of accept decisions (sigma|grad U| = "
                        f"{float(spread.min()):.3g} vs dU rounding error {float(loss_error.max()):.3g}; "
                        f"limit {100 * DECISION_RISK_MAX:g}%): reduce the loss in float64 or use float64 "
                        f"parameters")
    if not bool(quant_ok.all()):
        worst = float(quant.max())
        advice = "use float64 parameters (dtype: float64)" if dtype != torch.float64 else "increase sigma"
        problems.append(f"parameter rounding distorts each move by {100 * worst:.2g}% rms (sigma is "
                        f"{1 / (math.sqrt(12) * worst):.3g} units in the last place of the parameters; limit "
                        f"{100 * QUANTIZATION_MAX:g}%): {advice}")
    if problems:
        message = "rounding: " + "; ".join(problems)
    else:
        message = (f"rounding resolved: decision risk <= {100 * float(risk.nan_to_num(0).max()):.2g}%, "
                   f"move quantization <= {100 * float(quant.max()):.2g}%")
    return Resolution(loss_error=loss_error, spread=spread, decision_risk=risk, quantization=quant,
                      ok=risk_ok & quant_ok, message=message)
