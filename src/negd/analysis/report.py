"""Turn a run directory into summary.json, timeseries.csv, figures/*.png and report.md.

Works on interrupted runs: arms without snapshots are listed as missing, arms that stopped
early are analysed up to their last snapshot, and the report says so at the top.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from negd.analysis import figures as plots
from negd.analysis.branches import parameter_view
from negd.analysis.metrics import (
    C_SMALL,
    S_SMALL,
    arm_final,
    arm_series,
    run_verdict,
    sigma_trend,
)
from negd.analysis.rundir import ENSEMBLE_TWINS, NOISY_TWINS, TWIN_LABELS, RunData, load_run, to_float
from negd.analysis.schema import SCHEMA_VERSION, check_summary
from negd.analysis.verdict_text import (
    THRESHOLDS_TEXT,
    diagnosis_fields,
    diagnosis_lines,
    verdict_fields,
    verdict_line,
)

__all__ = ["build_report", "json_safe"]

# A CPU run on the torch path (no compiled kernel, or a network/rule it does not cover): said in the
# verdict, since the wall time is 25-50x the kernel's (docs/kernels.md; `negd info` says why).
TORCH_PATH_NOTE = ("engine: the torch path ran, not the C kernel (unavailable here, or not covering this "
                   "network and rule): expect 25-50x the kernel's wall time; `negd info` says why")


def json_safe(value):
    """inf -> "inf", -inf -> "-inf", NaN -> None, numpy scalars/arrays -> Python types."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _pm(value: float, se: float) -> str:
    return f"{_fmt(value)} +- {_fmt(se, 2)}"


def _write_timeseries(run: RunData, series: dict, path: Path) -> None:
    columns = ["arm", "label", "sigma", "lambda", "realizations", "snapshot"]
    value_columns = list(next(iter(series.values())).keys()) if series else []
    lines = []
    for arm in run.available_arms:
        s = series[arm.index]
        for row in range(arm.n_snapshots):
            values = []
            for k in value_columns:
                v = s[k][row]
                values.append(int(v) if np.issubdtype(s[k].dtype, np.integer) else repr(float(v)))
            lines.append(
                [arm.index, arm.label, repr(arm.sigma), repr(arm.lam), arm.realizations, row, *values]
            )
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns + value_columns)
        writer.writerows(lines)
    os.replace(tmp, path)


def _regime_text(run: RunData, final: dict) -> str:
    beta = run.beta
    c_final, c_max, t_c = final["c_final"], final["c_max"], final["t_c_exceeds"]
    if not math.isfinite(c_max):
        return "Regime not computed for this run (z, c are NaN): no statement on the small-sigma limit."
    parts = [f"c = sigma tr(H)/(2|g|) is {_fmt(c_final, 3)} at the end (max {_fmt(c_max, 3)})."]
    if math.isnan(t_c):
        parts.append(
            f"c stays below {C_SMALL} throughout: mutations are small compared with the scale on "
            "which the gradient changes, so the small-sigma expansion behind the correspondence applies."
        )
    else:
        g0, g1 = final["grad_norm_initial"], final["grad_norm_final"]
        parts.append(
            f"c first exceeds {C_SMALL} at t = {_fmt(t_c, 3)}; |g| went from {_fmt(g0, 3)} to "
            f"{_fmt(g1, 3)}, so curvature (tr H) competes with the gradient: the acceptance drops "
            "towards Phi(-c) and the drift towards GD is reduced by about exp(-c^2/2), which is where "
            "the correspondence is expected to weaken."
        )
    z = final["z_final"]
    if math.isinf(beta):
        parts.append("beta = inf: the twin is the mean-field drift of NE (z = inf by definition)."
                     if run.twin == "mean-field" else
                     "beta = inf: the twin is normalized GD (z = inf by definition).")
    elif math.isfinite(z):
        not_small = ("the moment-matched twin carries that factor and the acceptance A(z)"
                     if run.twin == "matched" else
                     "the mean-field twin carries that factor (it estimates NE's own expected step)"
                     if run.twin == "mean-field" else "the plain Langevin twin is only approximate "
                     "(negd reproduce --twin matched follows NE at any z)")
        regime = (
            "z << 1: Langevin regime, twin = GD with lr beta sigma^2/2"
            if z < C_SMALL
            else "z is not small: acceptance below 1 and the drift leaves the Langevin form "
            f"(factor erfcx(z/sqrt 2)); {not_small}"
        )
        parts.append(f"z = beta sigma |g| = {_fmt(z, 3)} at the end: {regime}.")
    spread = final.get("s_final", math.nan)
    if math.isfinite(spread) and run.twin not in NOISY_TWINS:
        verdict_on_spread = (
            f"below {S_SMALL}: the mutation noise the {run.twin} twin lacks moves the mean loss by less than "
            "the verdict's own tolerance" if abs(spread) <= S_SMALL else
            f"above {S_SMALL}: the theory no longer guarantees that the ensemble's mean loss stays with the "
            f"{run.twin} twin's (s ignores restoring forces and, at beta = inf, that every realization only "
            "moves downhill: near convergence it overstates the spread)")
        parts.append(f"s = tr(H) Var/(2 U_twin) = {_fmt(spread, 3)} at the end, with Var = sigma^2 x "
                     f"(accepted steps) the random-walk spread of the mutations: {verdict_on_spread}.")
    return " ".join(parts)


_ENSEMBLE_TWIN_RULES = {
    "langevin": "x <- x - alpha grad U + (sigma/sqrt(lambda)) xi per GD step (finite-beta NE is Langevin "
    "dynamics; its ensemble mean, not noiseless GD, is what the NE mean should follow)",
    "matched": "negd.rules.MomentMatchedLangevin: per GD step x <- x - (1/lambda)(beta sigma^2/2) "
    "erfcx(z/sqrt 2) grad U + sigma sqrt(A(z)/lambda) xi, with z = beta sigma |grad U| of each "
    "realization and A(z) = 1/2 + erfcx(z/sqrt 2)/2: neuroevolution's exact one-step drift and spread "
    "for a locally linear loss at any z (plain Langevin is its z -> 0 limit)",
    "mean-field": "negd.twins.mean_field.MeanFieldTwin: per GD step x <- x + (1/lambda) E[dx | x], "
    "neuroevolution's expected step estimated from M antithetic proposals x +- sigma xi_j, with the "
    "acceptance probability min(1, exp(-beta dU)) in place of the coin (1[dU <= 0] at beta = inf); it only "
    "evaluates the loss (no gradient) and is NE's exact drift at any sigma, smooth loss or not, but not its "
    "spread (its realizations differ only by the estimation noise of the step, O(sigma^2/M) per step)",
}


def _twin_text(run: RunData) -> str:
    if run.twin in ENSEMBLE_TWINS:
        r_l = run.arms[0].twin_realizations if run.arms else "?"
        name = TWIN_LABELS[run.twin].removesuffix(" mean")
        return (
            f"Twin: **{name}** of {r_l} realizations from the shared x(0), {_ENSEMBLE_TWIN_RULES[run.twin]}. "
            "Delta compares the two ensemble means; the floor and SE include both ensembles' sampling noise; "
            "losses are compared with the twin's mean loss +- SE."
        )
    return "Twin: **noiseless** gradient descent (one run from the shared x(0))."


def _acceptance_text(final: dict) -> str:
    m, p = final["acceptance_measured"], final["acceptance_predicted"]
    if not math.isfinite(m):
        return "no acceptance measured yet"
    text = f"measured {_fmt(m, 4)} (run average) vs predicted {_fmt(p, 4)}"
    mf, sf = final["acceptance_measured_final"], final["acceptance_se_final"]
    pf = final["acceptance_predicted_final"]
    spf = final.get("acceptance_predicted_se_final", math.nan)
    if all(math.isfinite(v) for v in (mf, sf, pf)) and sf > 0:
        err = math.hypot(sf, spf if math.isfinite(spf) else 0.0)
        text += (f"; last interval {_fmt(mf, 4)} +- {_fmt(sf, 2)} vs {_fmt(pf, 4)} +- {_fmt(spf, 2)} "
                 f"({(mf - pf) / err:+.1f} SE, both errors)")
    return text


RESOLUTION_KEYS = ("resolution_tie_fraction", "resolution_decision_risk_max", "resolution_loss_error_max",
                   "resolution_quantization_max", "resolution_ok")


def _resolution_over_arms(finals: dict, key: str):
    """The worst value of a resolution number over the arms (all arms must resolve their moves)."""
    values = [f[key] for f in finals.values() if key in f]
    if key == "resolution_ok":
        return all(values) if values else None
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else math.nan


def _resolution_text(cfg: dict, finals: dict) -> str:
    ok = _resolution_over_arms(finals, "resolution_ok")
    pct = lambda k: _fmt(100 * _resolution_over_arms(finals, k), 2) + "%"  # noqa: E731
    text = (f"Parameters in {cfg.get('dtype', 'float32')}, losses summed and compared in float64. Over all "
            f"arms: exact ties dU == 0 in {pct('resolution_tie_fraction')} of proposals; loss rounding can "
            f"flip at most {pct('resolution_decision_risk_max')} of accept decisions (rms dU rounding error "
            f"{_fmt(_resolution_over_arms(finals, 'resolution_loss_error_max'), 3)}); parameter rounding "
            f"distorts a move by at most {pct('resolution_quantization_max')} rms.")
    if ok is False:
        text += (" **Beyond the limits (0.5% of decisions, 1% of a move): rounding may change the dynamics "
                 "measurably; rerun with `dtype: float64` (`--dtype float64`) to rule it out.** (Flips of "
                 "decisions with dU ~ N(0, s^2) and a rounding error e reduce the mean drift by about "
                 "(e/s)^2/2: 0.14% at 1.7% of flipped decisions.)")
    elif ok:
        text += (" Both within limits (0.5% of decisions, 1% of a move): rounding does not change the "
                 "dynamics.")
    return text


def _draw(plot, *args) -> Path | None:
    """One figure, or None with one line on stderr: a figure that cannot be drawn from degenerate data
    (one realization, all-zero or NaN series) never costs the report its numbers."""
    try:
        return plot(*args)
    except Exception as e:  # noqa: BLE001 - matplotlib raises ValueError, OverflowError, ...
        print(f"negd: figure {args[-1].name} not drawn ({type(e).__name__}: {str(e)[:80]})", file=sys.stderr)
        return None


def build_report(run_dir: Path, *, figures: bool = True) -> Path:
    """Analyse ``run_dir`` and write its report files; returns the path of ``report.md``.

    ``figures=False`` skips the PNGs (a few seconds of matplotlib), e.g. for quick checks.
    """
    run = load_run(Path(run_dir))
    cfg = run.config
    out = run.path
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    series = {a.index: arm_series(a) for a in run.available_arms}
    finals = {a.index: arm_final(a, series[a.index]) for a in run.available_arms}
    runs = {a.index: run_verdict(a, series[a.index], finals[a.index]) for a in run.available_arms}
    trend = sigma_trend(run.arms, series)

    main = run.arms[0] if run.arms else None
    main_ok = main is not None and main.n_snapshots > 0
    figs: dict[str, Path | None] = {}
    if main_ok and figures:
        figs["weights"] = _draw(plots.plot_weights, main, fig_dir / "weights.png")
        figs["loss"] = _draw(plots.plot_loss, main, fig_dir / "loss.png")
        figs["params"] = _draw(plots.plot_params_scatter, main, fig_dir / "params_final.png")
    if figures:
        figs["delta"] = _draw(plots.plot_delta, run.arms, series, trend, fig_dir / "delta.png")
        figs["regime"] = _draw(plots.plot_regime, run.arms, series, fig_dir / "regime.png")

    wall = to_float(run.status.get("wall_seconds"))
    if not math.isfinite(wall):
        wall = float(sum(f["wall_seconds"] for f in finals.values() if math.isfinite(f["wall_seconds"])))
    missing = [a for a in run.arms if a.n_snapshots == 0]
    incomplete = [a for a in run.available_arms if not a.complete]
    partial = run.state != "complete" or bool(missing) or bool(incomplete)

    main_final = finals.get(0, {})
    diagnosis = {}
    if main_ok:
        diagnosis = diagnosis_fields(series[0], parameter_view(main, seed=int(cfg.get("seed") or 0)))
    summary = {
        "schema_version": SCHEMA_VERSION,
        "experiment": cfg.get("experiment"),
        "scale": cfg.get("scale"),
        "sigma": main.sigma if main else None,
        "beta": run.beta,
        "alpha": run.alpha,
        "lambda": main.lam if main else to_float(cfg.get("lambda")),
        "realizations": main.realizations if main else cfg.get("realizations"),
        "steps": main.ne_steps if main else None,
        "steps_done": main_final.get("ne_steps_done"),
        "t_final": main_final.get("t_final"),
        "t_final_planned": main.t_final if main else None,
        "twin": run.twin,
        "twin_realizations": main.twin_realizations if main and run.twin in ENSEMBLE_TWINS else None,
        "loss_twin_final": main_final.get("loss_gd_final"),
        "loss_twin_se_final": main_final.get("loss_twin_se_final"),
        "loss_twin_of_mean_final": main_final.get("loss_twin_of_mean_final"),
        **{
            k: main_final.get(k)
            for k in (
                "loss_gd_final",
                "loss_ne_mean_final",
                "loss_ne_se_final",
                "loss_of_mean_final",
                "loss_gap_relative",
                "loss_gap_relative_se",
                "loss_gap_in_se",
                "loss_gap_max_relative",
                "loss_gap_max_in_se",
                "t_loss_gap_max",
                "delta_final",
                "delta_floor_final",
                "delta_corrected_final",
                "delta_corrected_se_final",
                "delta_corrected_se_per_parameter_final",
                "delta_se_method",
                "param_change_final",
                "delta_ratio",
                "delta_ratio_se",
                "delta_ratio_upper",
                "acceptance_measured",
                "acceptance_predicted",
                "z_final",
                "c_final",
                "c_max",
                "z_max",
                "s_final",
            )
        },
        "dtype": cfg.get("dtype", "float32"),
        **{k: _resolution_over_arms(finals, k) for k in RESOLUTION_KEYS},
        "wall_seconds": wall,
        **(verdict_fields(runs[0]) if 0 in runs else {"verdict": "undetermined"}),
        **diagnosis,
        "state": run.state,
        "partial": partial,
        "seed": cfg.get("seed"),
        "arms": [
            {
                "index": a.index,
                "label": a.label,
                "sigma": a.sigma,
                "lambda": a.lam,
                "realizations": a.realizations,
                "snapshots": a.n_snapshots,
                "complete": a.complete,
                "t_final": finals[a.index]["t_final"] if a.index in finals else None,
                "delta_corrected_final": finals[a.index]["delta_corrected_final"]
                if a.index in finals
                else None,
                "delta_corrected_se_final": finals[a.index]["delta_corrected_se_final"]
                if a.index in finals
                else None,
                **{
                    k: finals[a.index][k] if a.index in finals else None
                    for k in ("loss_gd_final", "loss_twin_se_final", "loss_ne_mean_final", "loss_ne_se_final",
                              "loss_gap_relative", "loss_gap_relative_se", "loss_gap_in_se",
                              "loss_gap_max_relative", "t_loss_gap_max", "delta_ratio", "delta_ratio_se",
                              "z_max", "c_max", *RESOLUTION_KEYS)
                },
                **(verdict_fields(runs[a.index]) if a.index in runs else {"verdict": "missing"}),
                "problem": a.problem,
            }
            for a in run.arms
        ],
        "sigma_trend": None
        if trend is None
        else {
            "t": trend.t,
            "sigma": trend.sigma,
            "delta_corrected": trend.delta_corrected,
            "delta_corrected_se": trend.delta_corrected_se,
            "slope": trend.slope,
            "slope_se": trend.slope_se,
            "note": trend.note,
            "loss_gap_relative": trend.loss_gap_relative,
            "loss_gap_in_se": trend.loss_gap_in_se,
            "z_max": trend.z_max,
        },
        "figures": {k: str(v.relative_to(out)) for k, v in figs.items() if v is not None},
    }
    check_summary(summary)
    _write_atomic(out / "summary.json", json.dumps(json_safe(summary), indent=2, allow_nan=False) + "\n")
    _write_timeseries(run, series, out / "timeseries.csv")

    lines = _report_lines(run, cfg, series, finals, runs, trend, figs, wall, missing, incomplete, partial)
    if diagnosis:
        at = lines.index("## Delta against sigma")
        diagnosis["delta_ratio_all"] = main_final.get("delta_ratio", math.nan)
        lines[at:at] = diagnosis_lines(diagnosis, main.realizations)
    _write_atomic(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"


def _report_lines(
    run, cfg, series, finals, runs, trend, figs, wall, missing, incomplete, partial
) -> list[str]:
    verdicts = {i: v.verdict for i, v in runs.items()}
    name = cfg.get("experiment", "run")
    lines = [f"# negd report: {name} ({cfg.get('scale', '?')} scale)", ""]
    if partial:
        lines += [
            "> **Partial run** (state: "
            + run.state
            + "). "
            + (
                "Missing arms: " + ", ".join(f"{a.index} '{a.label}' ({a.problem})" for a in missing) + ". "
                if missing
                else ""
            )
            + (
                "Arms stopped early: "
                + ", ".join(
                    f"{a.index} '{a.label}' at t = {_fmt(float(a.arrays['t'][-1]), 3)} "
                    f"of {_fmt(a.t_final, 3)}"
                    for a in incomplete
                )
                + ". "
                if incomplete
                else ""
            )
            + "Numbers below are at the last snapshot each arm reached.",
            "",
        ]
    lines += ["## Verdict", "", _twin_text(run), "", "Loss resolution: " + _resolution_text(cfg, finals), ""]
    if cfg.get("kernel") is False and str(cfg.get("device", "cpu")).startswith("cpu"):
        lines.append(f"- {TORCH_PATH_NOTE}")
    if not verdicts:
        lines += ["No arm has snapshots yet: nothing to analyse.", ""]
    for a in run.arms:
        if a.index not in verdicts:
            lines.append(f"- arm {a.index} '{a.label}': missing ({a.problem})")
            continue
        lines.append(verdict_line(a, runs[a.index], finals[a.index]["t_final"]))
    lines += ["", THRESHOLDS_TEXT, ""]

    if 0 in finals:
        f = finals[0]
        lines += ["## Main arm in numbers", "", "| quantity | value |", "| --- | --- |"]
        langevin = run.twin in ENSEMBLE_TWINS  # an ensemble twin: its mean, variance, mean loss
        twin_rows = [
            (
                f"loss of the twin ({TWIN_LABELS[run.twin]} of {run.arms[0].twin_realizations} "
                "realizations) +- SE",
                _pm(f["loss_gd_final"], f["loss_twin_se_final"]),
            ),
            ("loss of the averaged twin network", _fmt(f["loss_twin_of_mean_final"], 6)),
        ] if langevin else [("loss GD", _fmt(f["loss_gd_final"], 6))]
        rows = [
            ("t reached / planned", f"{_fmt(f['t_final'], 4)} / {_fmt(run.arms[0].t_final, 4)}"),
            *twin_rows,
            ("loss NE mean +- SE", _pm(f["loss_ne_mean_final"], f["loss_ne_se_final"])),
            (
                "relative gap (NE mean - twin)/twin" if langevin else "relative gap (NE mean - GD)/GD",
                f"{100 * f['loss_gap_final'] / f['loss_gd_final']:+.3f}% ({f['loss_gap_in_se']:.1f} SE)"
                if f["loss_gd_final"]
                else "n/a",
            ),
            (
                "largest loss gap along the run",
                f"{100 * f['loss_gap_max_relative']:+.2f}% ({f['loss_gap_max_in_se']:.1f} SE) at t = "
                f"{_fmt(f['t_loss_gap_max'], 3)}",
            ),
            ("loss of averaged network U(<x>)", _fmt(f["loss_of_mean_final"], 6)),
            ("Delta (raw)", _fmt(f["delta_final"])),
            (
                "floor (1/N) sum (Var_NE(x_i)/R + Var_L(x_i)/R_L)"
                if langevin
                else "floor (1/N) sum Var(x_i)/R",
                _fmt(f["delta_floor_final"]),
            ),
            ("Delta_c = Delta - floor +- SE", _pm(f["delta_corrected_final"], f["delta_corrected_se_final"])),
            (
                "SE of Delta_c: method (per-parameter SE for comparison)",
                f"{f['delta_se_method']} ({_fmt(f['delta_corrected_se_per_parameter_final'])})",
            ),
            (
                "param_change (1/N) sum (<x>_L(t) - x(0))^2 - its floor"
                if langevin
                else "param_change (1/N) sum (x_GD(t) - x(0))^2",
                _fmt(f["param_change_final"]),
            ),
            (
                "Delta_c / param_change (2-SE upper bound)",
                f"{_fmt(f['delta_ratio'], 3)} ({_fmt(f['delta_ratio_upper'], 3)})",
            ),
            ("acceptance", _acceptance_text(f)),
            ("z, c at the end", f"{_fmt(f['z_final'], 3)}, {_fmt(f['c_final'], 3)}"),
        ]
        lines += [f"| {k} | {v} |" for k, v in rows]
        lines += ["", "**Regime.** " + _regime_text(run, f), ""]

    lines += ["## Delta against sigma", ""]
    if trend is None:
        lines += ["No arm has snapshots after t = 0.", ""]
    else:
        lines += [
            f"Corrected Delta at the common time t = {_fmt(trend.t, 4)} (latest time every available arm "
            "reached):",
            "",
            "| arm | sigma | Delta_c +- SE | loss gap (NE - twin)/twin | max z up to t |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {lab} | {_fmt(s)} | {_pm(d, e)} | {100 * g:+.2f}% ({gs:.1f} SE) | {_fmt(z, 3)} |"
            for lab, s, d, e, g, gs, z in zip(
                trend.labels,
                trend.sigma,
                trend.delta_corrected,
                trend.delta_corrected_se,
                trend.loss_gap_relative,
                trend.loss_gap_in_se,
                trend.z_max,
            )
        ]
        if math.isfinite(trend.slope):
            shrink = "shrinks" if trend.slope - 2 * trend.slope_se > 0 else "does not clearly shrink"
            lines += [
                "",
                f"Log-log slope d log Delta_c / d log sigma = {trend.slope:.2f} +- {trend.slope_se:.2f}: "
                f"Delta_c {shrink} as sigma is halved (a positive slope means the gap closes as sigma -> 0, "
                "as the correspondence predicts).",
            ]
        if trend.note:
            lines += ["", f"Note: {trend.note}."]
        lines += [""]
    if finals:
        twin = "twin +- SE" if run.twin in ENSEMBLE_TWINS else "GD"
        lines += [
            "Each arm at its last snapshot (the loss gap in units of the combined SE):",
            "",
            f"| arm | sigma | t | loss NE +- SE | loss {twin} | gap (NE - twin)/twin | Delta_c/param_change "
            "| max z | max c | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for a in run.arms:
            if a.index not in finals:
                continue
            f = finals[a.index]
            u_twin = f["loss_gd_final"]
            gap = (f["loss_ne_mean_final"] - u_twin) / u_twin if u_twin else math.nan
            twin_loss = _pm(f["loss_gd_final"], f["loss_twin_se_final"]) if run.twin in ENSEMBLE_TWINS \
                else _fmt(f["loss_gd_final"])
            lines.append(
                f"| {a.label} | {_fmt(a.sigma)} | {_fmt(f['t_final'], 3)} | "
                f"{_pm(f['loss_ne_mean_final'], f['loss_ne_se_final'])} | {twin_loss} | "
                f"{100 * gap:+.2f}% ({f['loss_gap_in_se']:.1f} SE) | {_fmt(f['delta_ratio'], 3)} | "
                f"{_fmt(f['z_max'], 3)} | {_fmt(f['c_max'], 3)} | {verdicts[a.index].label} |"
            )
        lines += [""]

    if len(run.available_arms) > 0:
        lines += ["## Figures", ""]
        twin_name = TWIN_LABELS[run.twin]
        captions = {
            "weights": "Parameters with the largest change: single NE trajectories (thin grey), "
            f"ensemble mean (blue), {twin_name} (dashed).",
            "loss": f"Loss against t: NE mean with +-SE band, loss of the averaged network, {twin_name}.",
            "delta": "Delta(t) raw and floor (left), floor-corrected with +-SE band (middle), "
            "corrected Delta against sigma (right).",
            "params": f"All parameters of the averaged NE network against the {twin_name} at the final time "
            "(grey: initial "
            "values, showing how far the parameters moved).",
            "regime": "Acceptance measured vs predicted, and the regime parameters z, c along the run.",
        }
        for key in ("weights", "loss", "delta", "params", "regime"):
            p = figs.get(key)
            if p is not None:
                lines += [f"![{key}]({p.relative_to(run.path).as_posix()})", "", captions[key], ""]

    lines += ["## Configuration", "", "| key | value |", "| --- | --- |"]
    for key in (
        "experiment",
        "scale",
        "network",
        "n_params",
        "task",
        "init",
        "beta",
        "alpha",
        "lambda",
        "gd_rule",
        "twin",
        "twin_realizations",
        "realizations",
        "t_final",
        "n_snapshots",
        "trajectories",
        "seed",
        "device",
        "kernel",
        "created",
    ):
        if key in cfg:
            lines.append(f"| {key} | `{json.dumps(cfg[key])}` |")
    lines += [
        "",
        "| arm | label | sigma | lambda | R | NE steps | snapshots | status |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in run.arms:
        state = "complete" if a.complete else (a.problem or "stopped early")
        lines.append(
            f"| {a.index} | {a.label} | {_fmt(a.sigma)} | {_fmt(a.lam)} | {a.realizations} | "
            f"{a.ne_steps} | {a.n_snapshots} | {state} |"
        )
    versions = cfg.get("versions", {})
    lines += [
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "",
        f"Wall time: {_fmt(wall, 4)} s (run state: {run.state}).",
        "",
        "Files: `summary.json` (main numbers), `timeseries.csv` (one row per arm and snapshot), `figures/`.",
    ]
    return lines
