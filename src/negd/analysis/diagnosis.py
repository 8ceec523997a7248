"""Predictions with their error, acceptance misses, and the small parameter that explains a miss.

The regime check (negd.diagnostics.regime) estimates c = sigma tr(H)/(2|g|) from a few Hutchinson
probes at each snapshot, so the acceptance it predicts (A = Phi(-c_perp) at beta = inf, Whitelam et
al., Nat. Commun. 12, 6317 (2021), and negd.theory.curvature_acceptance at finite beta) is one noisy
draw per snapshot. Here:

* **SE of a probe estimate.** Runs that store ``c_se`` / ``acceptance_predicted_se`` (regime_check
  propagates the probes' SE of tr H through A(c)) use them; older runs get the SE from the scatter of
  neighbouring snapshots, var ~ mean over s of (x_s - (x_{s-1} + x_{s+1})/2)^2 / (3/2) (the second
  difference of a smooth series is ~0, that of independent noise has variance 3/2 var).
* **Pooling.** A snapshot's prediction is the inverse-variance weighted mean of that snapshot and its
  two neighbours (equal weights where the SEs are estimated from the scatter), with SE
  1/sqrt(sum of weights): a prediction is then three draws, not one.
* **Misses in SE.** An interval's miss is (measured - predicted) / sqrt(SE_measured^2 + SE_predicted^2),
  both errors counted.
* **Attribution.** Where the loss gap, Delta_c/param_change or the acceptance miss peaks, the report
  names the largest of the small parameters there, each relative to its limit (z = beta sigma |g| at
  finite beta only, limit 0.1; |c|, limit 0.1; |s| = |tr(H) Var/(2 U_twin)|, limit 0.05:
  negd.analysis.metrics.spread_parameter), with its value, and says whether it exceeds its limit: if
  none does, the small-sigma theory does not explain the miss.
"""

from __future__ import annotations

import math

import numpy as np

from negd.analysis.verdict import LOSS_GAP_HOLDS

__all__ = ["Z_SMALL", "C_SMALL", "S_SMALL", "SMALL", "scatter_se", "pooled", "acceptance_misses", "attribute",
           "attributions"]

Z_SMALL = 0.1  # z = beta sigma |g| below which NE is Langevin dynamics (drift off by erfcx(z/sqrt 2): 8%)
C_SMALL = 0.1  # curvature parameter below which the small-sigma limit is accurate (c^2/2 < 0.5%)
# Spread parameter below which the mutation noise a noiseless twin lacks leaves the mean loss
# within the verdict's own "holds" loss gap (negd.analysis.metrics.spread_parameter).
S_SMALL = LOSS_GAP_HOLDS
SMALL = {"z": Z_SMALL, "c": C_SMALL, "s": S_SMALL}


def scatter_se(values: np.ndarray) -> float:
    """SE of one point of a smooth series from the scatter of its second differences (module docstring)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return math.nan
    second = x[1:-1] - 0.5 * (x[:-2] + x[2:])
    return float(math.sqrt(np.mean(second**2) / 1.5))


def pooled(values: np.ndarray, se: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each point pooled with its two neighbours (inverse-variance weights), and the pooled SE."""
    x = np.asarray(values, dtype=np.float64)
    stored = se is not None and np.isfinite(np.asarray(se, dtype=np.float64)).any()
    if stored:
        s = np.asarray(se, dtype=np.float64).copy()
        fallback = scatter_se(x)
        s = np.where(np.isfinite(s) & (s > 0), s, fallback)
    else:
        s = np.full_like(x, scatter_se(x))
    out, out_se = np.full_like(x, np.nan), np.full_like(x, np.nan)
    for i in range(x.size):
        lo, hi = max(i - 1, 0), min(i + 2, x.size)
        xi, si = x[lo:hi], s[lo:hi]
        ok = np.isfinite(xi)
        if not ok.any():
            continue
        if np.isfinite(si[ok]).all() and (si[ok] > 0).all():
            w = 1 / si[ok] ** 2
            out[i] = float(np.sum(w * xi[ok]) / np.sum(w))
            out_se[i] = float(1 / math.sqrt(np.sum(w)))
        else:  # no usable error: plain mean, SE unknown
            out[i] = float(np.mean(xi[ok]))
    return out, out_se


def acceptance_misses(series: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per interval (row s covers (s-1, s]): measured, pooled prediction, both SEs, miss in SE."""
    pred, pred_se = pooled(series["acceptance_predicted"], series.get("acceptance_predicted_se"))
    mid = np.concatenate([[np.nan], 0.5 * (pred[1:] + pred[:-1])])
    mid_se = np.concatenate([[np.nan], 0.5 * np.hypot(pred_se[1:], pred_se[:-1])])
    measured, measured_se = series["acceptance"], series["acceptance_se"]
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.hypot(measured_se, np.nan_to_num(mid_se))
        miss = np.where(err > 0, (measured - mid) / err, np.nan)
    return {"predicted": mid, "predicted_se": mid_se, "measured": measured, "measured_se": measured_se,
            "miss_in_se": miss}


def attribute(series: dict[str, np.ndarray], row: int) -> dict[str, float | str]:
    """The small parameters at snapshot ``row`` (|c|, |s|; z only where finite), the largest of them
    relative to its own limit (SMALL), and whether it exceeds that limit."""
    values = {"z": float(series["z"][row]), "c": abs(float(series["c"][row])),
              "s": abs(float(series["s"][row]))}
    usable = {k: v for k, v in values.items() if math.isfinite(v)}
    if not usable:
        return {"t": float(series["t"][row]), "parameter": "none", "parameter_value": math.nan,
                "exceeds_limit": False, **values}
    name = max(usable, key=lambda k: usable[k] / SMALL[k])
    return {"t": float(series["t"][row]), "parameter": name, "parameter_value": usable[name],
            "exceeds_limit": usable[name] > SMALL[name], **values}


def _peak(values: np.ndarray) -> int | None:
    v = np.abs(np.asarray(values, dtype=np.float64))
    v[0:1] = np.nan  # t = 0 has no gap and no interval
    return int(np.nanargmax(v)) if np.isfinite(v).any() else None


def attributions(series: dict[str, np.ndarray]) -> dict[str, dict]:
    """Where the loss gap (in SE), Delta_c/param_change and the acceptance miss (in SE) peak, and
    the small parameter that is largest there. Keys: loss_gap, delta_ratio, acceptance."""
    misses = acceptance_misses(series)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap_in_se = series["loss_gap_relative"] / series["loss_gap_relative_se"]
    peaks = {
        "loss_gap": (_peak(np.where(np.isfinite(gap_in_se), gap_in_se, series["loss_gap_relative"])),
                     series["loss_gap_relative"], gap_in_se),
        "delta_ratio": (_peak(series["delta_ratio"] + 2 * series["delta_ratio_se"]), series["delta_ratio"],
                        series["delta_ratio"] / series["delta_ratio_se"]),
        "acceptance": (_peak(misses["miss_in_se"]), misses["measured"] - misses["predicted"],
                       misses["miss_in_se"]),
    }
    out = {}
    for key, (row, value, in_se) in peaks.items():
        if row is None:
            continue
        out[key] = {"value": float(value[row]), "in_se": float(in_se[row]), **attribute(series, row)}
    return out
