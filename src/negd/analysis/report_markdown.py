"""The markdown body of a run's report (``report.md``): verdict, tables of every arm, Delta against
sigma, the diagnosis and figures, from what :func:`negd.analysis.report.build_report` computed."""

from __future__ import annotations

import json
import math

from negd.analysis.report_text import acceptance_text, fmt, pm, regime_text, resolution_text, twin_text
from negd.analysis.rundir import ENSEMBLE_TWINS, TWIN_LABELS
from negd.analysis.verdict_text import THRESHOLDS_TEXT, verdict_line

__all__ = ["TORCH_PATH_NOTE", "report_lines"]

# A CPU run on the torch path (no compiled kernel, or a network/rule it does not cover): said in the
# verdict, since the wall time is 25-50x the kernel's (docs/kernels.md; `negd info` says why).
TORCH_PATH_NOTE = ("engine: the torch path ran, not the C kernel (unavailable here, or not covering this "
                   "network and rule): expect 25-50x the kernel's wall time; `negd info` says why")


def report_lines(
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
                    f"{a.index} '{a.label}' at t = {fmt(float(a.arrays['t'][-1]), 3)} "
                    f"of {fmt(a.t_final, 3)}"
                    for a in incomplete
                )
                + ". "
                if incomplete
                else ""
            )
            + "Numbers below are at the last snapshot each arm reached.",
            "",
        ]
    lines += ["## Verdict", "", twin_text(run), "", "Loss resolution: " + resolution_text(cfg, finals), ""]
    # the kernel covers MLP regressions only: a control task (its config has episodes) or an objective
    # has no kernel to miss
    mlp_task = "objective" not in cfg and "episodes" not in cfg
    if cfg.get("kernel") is False and str(cfg.get("device", "cpu")).startswith("cpu") and mlp_task:
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
                pm(f["loss_gd_final"], f["loss_twin_se_final"]),
            ),
            ("loss of the averaged twin network", fmt(f["loss_twin_of_mean_final"], 6)),
        ] if langevin else [("loss GD", fmt(f["loss_gd_final"], 6))]
        rows = [
            ("t reached / planned", f"{fmt(f['t_final'], 4)} / {fmt(run.arms[0].t_final, 4)}"),
            *twin_rows,
            ("loss NE mean +- SE", pm(f["loss_ne_mean_final"], f["loss_ne_se_final"])),
            (
                "relative gap (NE mean - twin)/twin" if langevin else "relative gap (NE mean - GD)/GD",
                f"{100 * f['loss_gap_final'] / f['loss_gd_final']:+.3f}% ({f['loss_gap_in_se']:.1f} SE)"
                if f["loss_gd_final"]
                else "n/a",
            ),
            (
                "largest loss gap along the run",
                f"{100 * f['loss_gap_max_relative']:+.2f}% ({f['loss_gap_max_in_se']:.1f} SE) at t = "
                f"{fmt(f['t_loss_gap_max'], 3)}",
            ),
            ("loss of averaged network U(<x>)", fmt(f["loss_of_mean_final"], 6)),
            ("Delta (raw)", fmt(f["delta_final"])),
            (
                "floor (1/N) sum (Var_NE(x_i)/R + Var_L(x_i)/R_L)"
                if langevin
                else "floor (1/N) sum Var(x_i)/R",
                fmt(f["delta_floor_final"]),
            ),
            ("Delta_c = Delta - floor +- SE", pm(f["delta_corrected_final"], f["delta_corrected_se_final"])),
            (
                "SE of Delta_c: method (per-parameter SE for comparison)",
                f"{f['delta_se_method']} ({fmt(f['delta_corrected_se_per_parameter_final'])})",
            ),
            (
                "param_change (1/N) sum (<x>_L(t) - x(0))^2 - its floor"
                if langevin
                else "param_change (1/N) sum (x_GD(t) - x(0))^2",
                fmt(f["param_change_final"]),
            ),
            (
                "Delta_c / param_change (2-SE upper bound)",
                f"{fmt(f['delta_ratio'], 3)} ({fmt(f['delta_ratio_upper'], 3)})",
            ),
            ("acceptance", acceptance_text(f)),
            ("z, c at the end", f"{fmt(f['z_final'], 3)}, {fmt(f['c_final'], 3)}"),
        ]
        lines += [f"| {k} | {v} |" for k, v in rows]
        lines += ["", "**Regime.** " + regime_text(run, f), ""]

    lines += ["## Delta against sigma", ""]
    if trend is None:
        lines += ["No arm has snapshots after t = 0.", ""]
    else:
        lines += [
            f"Corrected Delta at the common time t = {fmt(trend.t, 4)} (latest time every available arm "
            "reached):",
            "",
            "| arm | sigma | Delta_c +- SE | loss gap (NE - twin)/twin | max z up to t |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {lab} | {fmt(s)} | {pm(d, e)} | {100 * g:+.2f}% ({gs:.1f} SE) | {fmt(z, 3)} |"
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
            twin_loss = pm(f["loss_gd_final"], f["loss_twin_se_final"]) if run.twin in ENSEMBLE_TWINS \
                else fmt(f["loss_gd_final"])
            lines.append(
                f"| {a.label} | {fmt(a.sigma)} | {fmt(f['t_final'], 3)} | "
                f"{pm(f['loss_ne_mean_final'], f['loss_ne_se_final'])} | {twin_loss} | "
                f"{100 * gap:+.2f}% ({f['loss_gap_in_se']:.1f} SE) | {fmt(f['delta_ratio'], 3)} | "
                f"{fmt(f['z_max'], 3)} | {fmt(f['c_max'], 3)} | {verdicts[a.index].label} |"
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
        "episodes",
        "objective",
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
            f"| {a.index} | {a.label} | {fmt(a.sigma)} | {fmt(a.lam)} | {a.realizations} | "
            f"{a.ne_steps} | {a.n_snapshots} | {state} |"
        )
    versions = cfg.get("versions", {})
    lines += [
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) if versions else "",
        f"Wall time: {fmt(wall, 4)} s (run state: {run.state}).",
        "",
        "Files: `summary.json` (main numbers), `timeseries.csv` (one row per arm and snapshot), `figures/`.",
    ]
    return lines
