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
from negd.analysis.metrics import arm_final, arm_series, run_verdict, sigma_trend
from negd.analysis.report_markdown import report_lines
from negd.analysis.report_text import RESOLUTION_KEYS, resolution_over_arms
from negd.analysis.rundir import ENSEMBLE_TWINS, RunData, load_run, to_float
from negd.analysis.schema import SCHEMA_VERSION, check_summary
from negd.analysis.verdict_text import diagnosis_fields, diagnosis_lines, verdict_fields

__all__ = ["build_report", "json_safe"]

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
        **{k: resolution_over_arms(finals, k) for k in RESOLUTION_KEYS},
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

    lines = report_lines(run, cfg, series, finals, runs, trend, figs, wall, missing, incomplete, partial)
    if diagnosis:
        at = lines.index("## Delta against sigma")
        diagnosis["delta_ratio_all"] = main_final.get("delta_ratio", math.nan)
        lines[at:at] = diagnosis_lines(diagnosis, main.realizations)
    _write_atomic(out / "report.md", "\n".join(lines) + "\n")
    return out / "report.md"

