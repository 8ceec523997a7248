"""Per-arm time series, final numbers, the Delta-vs-sigma trend and the verdict of a run.

The verdict (negd.analysis.verdict: holds / weakens / fails / unresolved, from the 2-SE bands
of Delta_c/param_change and of the relative loss gap, over every snapshot) compares the two things
the paper shows (Whitelam et al., Nat. Commun. 12, 6317 (2021), Figs. 1-2): the ensemble-mean
neuroevolution loss against gradient descent, and the floor-corrected Delta (negd.analysis.delta)
against the size of the parameters' change over the run,
param_change = (1/N) sum_i (x_i^GD(t) - x_i(0))^2.

Whatever the label, a run whose arithmetic does not resolve its moves (negd.diagnostics.resolution: exact
ties dU == 0 or an estimated decision-flip fraction above DECISION_RISK_MAX = 0.5%, or moves
quantized by the parameter dtype by more than QUANTIZATION_MAX = 1%) says so in its verdict: its
numbers are not those of the paper's dynamics, whatever they show.

With a Langevin twin (finite beta) "GD" is the twin's ensemble mean: Delta compares two noisy
means (floor and SE of negd.analysis.delta, equation (4)), param_change is the squared
displacement of the twin's mean minus its own noise floor (1/N) sum_i q_i^2/R_L (unbiased for
the true mean's displacement), and the loss gap is measured against the twin's mean loss in
units of the combined standard error sqrt(SE_NE^2 + SE_twin^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from negd.analysis.delta import delta_stats
from negd.analysis.diagnosis import C_SMALL, S_SMALL, acceptance_misses
from negd.analysis.rundir import ENSEMBLE_TWINS, NOISY_TWINS, ArmData
from negd.analysis.verdict import (
    LOSS_GAP_FAILS,
    LOSS_GAP_HOLDS,
    RATIO_FAILS,
    RATIO_HOLDS,
    TrajectoryVerdict,
    Verdict,
    decide,
    trajectory_verdict,
)
from negd.diagnostics.resolution import DECISION_RISK_MAX, QUANTIZATION_MAX

__all__ = [
    "RATIO_HOLDS",
    "RATIO_FAILS",
    "LOSS_GAP_HOLDS",
    "LOSS_GAP_FAILS",
    "C_SMALL",
    "S_SMALL",
    "spread_parameter",
    "arm_series",
    "arm_final",
    "sigma_trend",
    "SigmaTrend",
    "verdict",
    "run_verdict",
    "Verdict",
    "TrajectoryVerdict",
    "SCALAR_COLUMNS",
]


# Per-snapshot scalar columns copied from snapshots.npz into timeseries.csv.
SCALAR_COLUMNS = (
    "t",
    "ne_step",
    "gd_step",
    "ne_loss_mean",
    "ne_loss_se",
    "loss_of_mean",
    "gd_loss",
    "acceptance",
    "acceptance_se",
    "acceptance_predicted",
    "acceptance_predicted_se",
    "grad_norm",
    "trace_hessian",
    "z",
    "c",
    "c_se",
    "drift_factor",
    "drift_factor_se",
    "wall_seconds",
    "gd_loss_se",
    "gd_loss_of_mean",
    "twin_grad_norm",
    "delta_corrected_se_covariance",
    "tie_fraction",
    "loss_error",
    "decision_risk",
    "quantization",
)


def arm_series(arm: ArmData) -> dict[str, np.ndarray]:
    """Scalar columns of one arm [S]: the stored ones plus Delta, floor, corrected, SE, change."""
    a = arm.arrays
    change = np.mean((a["gd_params"] - a["gd_params"][0]) ** 2, axis=1)
    if arm.twin in ENSEMBLE_TWINS:
        stats = delta_stats(a["gd_params"], a["param_mean"], a["param_var"], arm.realizations,
                            twin_var=a["gd_param_var"], twin_realizations=arm.twin_realizations)
        change = change - np.mean(a["gd_param_var"], axis=1) / max(arm.twin_realizations, 1)
    else:
        stats = delta_stats(a["gd_params"], a["param_mean"], a["param_var"], arm.realizations)
    out = {k: np.asarray(a[k]) for k in SCALAR_COLUMNS}
    # The run stored the SE from the full covariance of the realizations where it could; the
    # per-parameter SE (parameters independent) is a fallback and, on real runs, often far too small.
    per_parameter = np.asarray(stats.corrected_se)
    covariance = np.asarray(a["delta_corrected_se_covariance"])
    out.update(
        delta=np.asarray(stats.delta),
        delta_floor=np.asarray(stats.floor),
        delta_corrected=np.asarray(stats.corrected),
        delta_corrected_se=np.where(np.isfinite(covariance), covariance, per_parameter),
        delta_corrected_se_per_parameter=per_parameter,
        param_change=change,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = change > 0
        out["delta_ratio"] = np.where(positive, out["delta_corrected"] / change, np.nan)
        out["delta_ratio_se"] = np.where(positive, out["delta_corrected_se"] / change, np.nan)
    out["loss_gap_relative"], out["loss_gap_relative_se"] = _loss_gaps(out)
    out["s"] = _spread_series(arm, out)
    return out


def _weighted_acceptance(series: dict[str, np.ndarray]) -> tuple[float, float]:
    """Run-average measured and predicted acceptance, weighted by the NE steps of each interval.

    Row s of `acceptance` covers the interval (s-1, s]; the prediction there is the mean of the
    predictions at its two ends (the regime check runs at snapshots)."""
    steps = np.diff(series["ne_step"].astype(np.float64))
    measured = series["acceptance"][1:]
    pred = series["acceptance_predicted"]
    pred_mid = 0.5 * (pred[1:] + pred[:-1])
    ok = np.isfinite(measured) & (steps > 0)
    acc = float(np.sum(measured[ok] * steps[ok]) / np.sum(steps[ok])) if ok.any() else math.nan
    okp = ok & np.isfinite(pred_mid)
    acc_pred = float(np.sum(pred_mid[okp] * steps[okp]) / np.sum(steps[okp])) if okp.any() else math.nan
    return acc, acc_pred


def _nanmax(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.isfinite(values).any() else math.nan


def _resolution(series: dict[str, np.ndarray]) -> dict[str, float]:
    """Run-level rounding numbers (negd.diagnostics.resolution): tie fraction over all proposals, the largest
    decision risk and move quantization of the snapshots, and whether both stay within limits."""
    steps = np.diff(series["ne_step"].astype(np.float64))
    ties = series["tie_fraction"][1:]
    ok = np.isfinite(ties) & (steps > 0)
    tie_fraction = float(np.sum(ties[ok] * steps[ok]) / np.sum(steps[ok])) if ok.any() else math.nan
    risk, quant = _nanmax(series["decision_risk"]), _nanmax(series["quantization"])
    at_risk = max((v for v in (tie_fraction, risk) if math.isfinite(v)), default=math.nan)
    resolved = not (at_risk > DECISION_RISK_MAX or quant > QUANTIZATION_MAX)
    return {"resolution_tie_fraction": tie_fraction, "resolution_decision_risk_max": risk,
            "resolution_loss_error_max": _nanmax(series["loss_error"]),
            "resolution_quantization_max": quant, "resolution_ok": resolved}


def _spread_series(arm: ArmData, series: dict[str, np.ndarray]) -> np.ndarray:
    """s(t) = tr(H) Var(t) / (2 U_twin(t)) at every snapshot (:func:`spread_parameter`); 0 for a twin
    that carries NE's noise (Langevin, matched; the mean-field twin follows NE's mean drift alone)."""
    if arm.twin in NOISY_TWINS:
        return np.zeros(len(series["ne_step"]))
    steps = np.diff(series["ne_step"].astype(np.float64))
    accept = np.nan_to_num(series["acceptance_predicted"][1:], nan=0.5)
    variance = arm.sigma**2 * np.concatenate([[0.0], np.cumsum(steps * accept)])
    u_twin, trace = series["gd_loss"], series["trace_hessian"]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isfinite(trace) & (u_twin > 0), trace * variance / (2 * u_twin), np.nan)


def spread_parameter(arm: ArmData, series: dict[str, np.ndarray]) -> float:
    """s = tr(H) Var / (2 U_twin) at the last snapshot: the relative excess of the ensemble-mean loss
    that the mutation noise alone causes, which a noiseless twin lacks (0 for an ensemble twin, whose
    noise is NE's).

    Each NE step moves a realization by sigma xi with probability A (the predicted acceptance:
    1/2 at beta = inf, ~1 at small z), so without restoring forces the parameters' variance after
    the run is Var = sigma^2 sum_k dn_k A_k (a random walk; Whitelam et al. 2021, noise of variance
    sigma^2/2 per step at beta = inf), and over a quadratic loss the mean loss exceeds the loss of
    the mean by tr(H) Var / 2 (Jensen). Negative curvature and restoring forces make the true excess
    differ; s is the theory's scale of it, from the run's own sigma, steps, acceptance and tr(H)."""
    return float(_spread_series(arm, series)[-1])


def arm_final(arm: ArmData, series: dict[str, np.ndarray]) -> dict[str, float]:
    """The numbers of the last snapshot of an arm (and run averages of acceptance)."""
    last = {k: float(v[-1]) for k, v in series.items()}
    acc, acc_pred = _weighted_acceptance(series)
    change = last["param_change"]
    ratio, ratio_se = last["delta_ratio"], last["delta_ratio_se"]
    ratio_upper = max(ratio, 0.0) + 2 * ratio_se if math.isfinite(ratio) else math.nan
    gap = last["ne_loss_mean"] - last["gd_loss"]
    gap_se = math.hypot(last["ne_loss_se"], last["gd_loss_se"]) if math.isfinite(last["gd_loss_se"]) \
        else last["ne_loss_se"]
    c = series["c"]
    above = np.nonzero(np.isfinite(c) & (c > C_SMALL))[0]
    # Largest relative loss gap along the run (the final one can hide a transient lag).
    misses = acceptance_misses(series)  # the prediction pooled over neighbouring snapshots, with its SE
    gaps = series["loss_gap_relative"]
    gaps_se = _in_se(gaps, series["loss_gap_relative_se"])
    worst = int(np.nanargmax(np.abs(gaps))) if np.isfinite(gaps).any() else 0
    return {
        "t_final": last["t"],
        "ne_steps_done": int(series["ne_step"][-1]),
        "loss_gd_final": last["gd_loss"],
        "loss_ne_mean_final": last["ne_loss_mean"],
        "loss_ne_se_final": last["ne_loss_se"],
        "loss_of_mean_final": last["loss_of_mean"],
        "loss_gap_final": gap,
        "loss_gap_relative": last["loss_gap_relative"],
        "loss_gap_relative_se": last["loss_gap_relative_se"],
        "loss_gap_in_se": gap / gap_se if gap_se > 0 else math.copysign(math.inf, gap) if gap else 0.0,
        "loss_twin_se_final": last["gd_loss_se"],
        "loss_gap_max_relative": float(gaps[worst]),
        "loss_gap_max_in_se": float(gaps_se[worst]),
        "t_loss_gap_max": float(series["t"][worst]),
        "loss_twin_of_mean_final": last["gd_loss_of_mean"],
        "delta_final": last["delta"],
        "delta_floor_final": last["delta_floor"],
        "delta_corrected_final": last["delta_corrected"],
        "delta_corrected_se_final": last["delta_corrected_se"],
        "delta_corrected_se_per_parameter_final": last["delta_corrected_se_per_parameter"],
        "delta_se_method": "covariance" if np.isfinite(series["delta_corrected_se_covariance"][-1])
        else "per-parameter",
        "param_change_final": change,
        "delta_ratio": ratio,
        "delta_ratio_se": ratio_se,
        "delta_ratio_upper": ratio_upper,
        "realizations": arm.realizations,
        "twin_realizations": arm.twin_realizations if arm.twin in ENSEMBLE_TWINS else None,
        "acceptance_measured": acc,
        "acceptance_predicted": acc_pred,
        "acceptance_measured_final": last["acceptance"],
        "acceptance_se_final": last["acceptance_se"],
        "acceptance_predicted_final": float(misses["predicted"][-1]),
        "acceptance_predicted_se_final": float(misses["predicted_se"][-1]),
        "z_final": last["z"],
        "c_final": last["c"],
        "c_max": float(np.nanmax(c)) if np.isfinite(c).any() else math.nan,
        "z_max": float(np.nanmax(series["z"])) if np.isfinite(series["z"]).any() else math.nan,
        "t_c_exceeds": float(series["t"][above[0]]) if above.size else math.nan,
        "s_final": spread_parameter(arm, series),
        "grad_norm_initial": float(series["grad_norm"][0]),
        "grad_norm_final": last["grad_norm"],
        "wall_seconds": last["wall_seconds"],
        **_resolution(series),
    }


def _loss_gaps(series: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Signed (NE mean loss - twin loss)/|twin loss| per snapshot and its SE (combined, relative)."""
    gap = series["ne_loss_mean"] - series["gd_loss"]
    se = np.hypot(series["ne_loss_se"], np.nan_to_num(series["gd_loss_se"]))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.abs(series["gd_loss"])
        rel = np.where(scale > 0, gap / scale, np.nan)
        rel_se = np.where(scale > 0, se / scale, np.nan)
    return rel, rel_se


def _in_se(value: np.ndarray, se: np.ndarray) -> np.ndarray:
    """value / se, signed; +-inf where se = 0 and value != 0, 0 where both are 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, value / se, np.where(value == 0, 0.0, np.sign(value) * np.inf))


@dataclass(frozen=True)
class SigmaTrend:
    """Delta_c against sigma for the arms at a common time t (the latest time all arms reached)."""

    t: float
    sigma: list[float]
    labels: list[str]
    delta_corrected: list[float]
    delta_corrected_se: list[float]
    slope: float  # d log Delta_c / d log sigma (weighted least squares); NaN if < 2 usable arms
    slope_se: float
    note: str
    loss_gap_relative: list[float] = field(default_factory=list)  # (U_NE - U_twin)/U_twin at t
    loss_gap_in_se: list[float] = field(default_factory=list)
    z_max: list[float] = field(default_factory=list)  # largest z = beta sigma |g| up to t


def sigma_trend(arms: list[ArmData], series: dict[int, dict[str, np.ndarray]]) -> SigmaTrend | None:
    """Delta_c(sigma) at the latest time reached by every available arm, and its log-log slope.

    Points whose Delta_c is not positive (consistent with zero) cannot enter a log fit; they are
    reported but excluded, and the slope is fitted with weights 1/SE(log Delta_c)^2 where
    SE(log Delta_c) = SE / Delta_c.
    """
    avail = [a for a in arms if a.n_snapshots > 1]
    if not avail:
        return None
    t_common = min(float(series[a.index]["t"][-1]) for a in avail)
    sig, labels, dc, se, gap, gap_se, z_max = [], [], [], [], [], [], []
    for a in avail:
        s = series[a.index]
        row = int(np.nonzero(s["t"] <= t_common * (1 + 1e-9))[0][-1])
        sig.append(a.sigma)
        labels.append(a.label)
        dc.append(float(s["delta_corrected"][row]))
        se.append(float(s["delta_corrected_se"][row]))
        gap.append(float(s["loss_gap_relative"][row]))
        gap_se.append(float(_in_se(s["loss_gap_relative"], s["loss_gap_relative_se"])[row]))
        z = s["z"][: row + 1]
        z_max.append(float(np.nanmax(z)) if np.isfinite(z).any() else math.nan)
    ok = [i for i in range(len(sig)) if dc[i] > 0 and se[i] > 0 and sig[i] > 0]
    slope, slope_se, note = math.nan, math.nan, ""
    if len(avail) < 2:
        note = "only one arm available: no trend"
    elif len(ok) < 2:
        note = "fewer than two arms with Delta_c > 0: no slope (Delta_c consistent with zero)"
    else:
        x = np.log([sig[i] for i in ok])
        y = np.log([dc[i] for i in ok])
        w = np.array([(dc[i] / se[i]) ** 2 for i in ok])
        xm = np.sum(w * x) / np.sum(w)
        sxx = np.sum(w * (x - xm) ** 2)
        if sxx > 0:
            slope = float(np.sum(w * (x - xm) * (y - np.sum(w * y) / np.sum(w))) / sxx)
            slope_se = float(1 / math.sqrt(sxx))
        if len(ok) < len(avail):
            note = f"{len(avail) - len(ok)} arm(s) with Delta_c <= 0 left out of the fit"
    return SigmaTrend(t_common, sig, labels, dc, se, slope, slope_se, note, gap, gap_se, z_max)


def _percent(v: float) -> str:
    return f"{100 * v:.2g}%" if math.isfinite(v) else "n/a"


def _resolution_reason(final: dict) -> tuple[str | None, str | None]:
    """The resolution line of the reasons, and the caveat of the verdict when a limit is exceeded."""
    keys = ("resolution_tie_fraction", "resolution_decision_risk_max", "resolution_quantization_max")
    ties, risk, quant = (final.get(k, math.nan) for k in keys)
    if not any(math.isfinite(v) for v in (ties, risk, quant)):
        return None, None
    text = (f"resolution: exact ties {_percent(ties)} of proposals, decision risk {_percent(risk)} (limit "
            f"{100 * DECISION_RISK_MAX:g}%), move quantization {_percent(quant)} "
            f"(limit {100 * QUANTIZATION_MAX:g}%)")
    if final.get("resolution_ok", True):
        return text, None
    at_risk = max(v for v in (ties, risk) if math.isfinite(v)) if math.isfinite(ties) or math.isfinite(risk) \
        else math.nan
    problems = []
    if at_risk > DECISION_RISK_MAX:
        problems.append(f"rounding can flip {_percent(at_risk)} of accept decisions")
    if quant > QUANTIZATION_MAX:
        problems.append(f"parameter rounding distorts moves by {_percent(quant)}")
    return text, ("; ".join(problems)
                  + ": rerun with --dtype float64 (a config file: dtype: float64) to rule it out")


def verdict(final: dict[str, float]) -> Verdict:
    """The verdict of one snapshot's numbers (negd.analysis.verdict.decide) with the resolution caveat.

    ``final`` holds delta_ratio, delta_ratio_se (or delta_ratio_upper = max(ratio, 0) + 2 SE),
    loss_gap_relative (signed), loss_gap_relative_se (or loss_gap_in_se), t_final and optionally
    realizations and the resolution numbers of :func:`arm_final`."""
    ratio = final["delta_ratio"]
    ratio_se = final.get("delta_ratio_se")
    if ratio_se is None:
        ratio_se = (final["delta_ratio_upper"] - max(ratio, 0.0)) / 2
    gap = final["loss_gap_relative"]
    gap_se = final.get("loss_gap_relative_se")
    if gap_se is None:
        in_se = abs(final["loss_gap_in_se"])
        gap_se = abs(gap) / in_se if in_se > 0 else math.nan
    resolution, caveat = _resolution_reason(final)
    if final["t_final"] <= 0:
        return Verdict("undetermined", ["no snapshot after t = 0"], caveat)
    return decide(ratio, ratio_se, gap, gap_se, realizations=final.get("realizations"), t=final["t_final"],
                  caveat=caveat, extra_reasons=[resolution] if resolution else None)


def run_verdict(arm: ArmData, series: dict[str, np.ndarray], final: dict) -> TrajectoryVerdict:
    """The run's verdict over all its snapshots (negd.analysis.verdict.trajectory_verdict)."""
    _, caveat = _resolution_reason(final)
    return trajectory_verdict(series["t"], series["delta_ratio"], series["delta_ratio_se"],
                              series["loss_gap_relative"], series["loss_gap_relative_se"],
                              realizations=arm.realizations, caveat=caveat)
