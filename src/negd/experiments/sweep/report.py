"""The combined report of a sweep: sweep.json, sweep.md and the correspondence map sweep.png.

Per grid point (each a run directory with its own summary.json, negd.analysis) it collects the
measured Delta_c / param_change, the relative loss gap, the acceptance measured and predicted, the
regime parameters z = beta sigma |grad U|, c = sigma tr(H) / (2 |grad U|) and the spread
s = tr(H) Var / (2 U_twin) at the end of the run (negd.analysis.metrics.spread_parameter), and the
report's verdict. The map puts every point on the (z, c) plane, colored by its verdict,
over the region where the theory of Whitelam et al. 2021 (docs/theory.md) says neuroevolution
follows gradient descent: |c| <= 0.1 (the loss is locally linear over a mutation), at finite beta
z <= 0.1 (the Metropolis acceptance is in its linear, Langevin regime), and |s| <= 0.05 (the
mutation noise that a noiseless twin lacks moves the ensemble's mean loss by less than the
verdict's own loss tolerance; s = 0 for a Langevin or matched twin, which carries that noise).
At beta = inf, z is infinite: those points sit in a column of their own at the right. A point
outside by s alone is drawn with a cross over its marker.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from negd.analysis.metrics import S_SMALL
from negd.experiments.sweep.grid import SweepPoint
from negd.runfiles import atomic_write_bytes, read_json_object, write_json
from negd.validation import NegdError

__all__ = ["C_LIMIT", "Z_LIMIT", "point_row", "write_sweep_report"]

C_LIMIT = 0.1
Z_LIMIT = 0.1
S_LIMIT = S_SMALL
COLORS = {"holds": "tab:green", "weakens": "tab:orange", "fails": "tab:red", "unresolved": "tab:gray"}
# summary.json schema 1 called "fails" "does not hold" (negd.analysis.schema)
_OLD_LABELS = {"does not hold": "fails"}
FIELDS = ("delta_ratio", "delta_ratio_upper", "loss_gap_relative", "loss_gap_in_se", "acceptance_measured",
          "acceptance_predicted", "z_final", "c_final", "z_max", "c_max", "s_final", "wall_seconds")


def _number(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower() in ("inf", "infinity"):
        return math.inf
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def theory_inside(beta: float, z: float, c: float, s: float = 0.0) -> bool | None:
    """Whether (z, c, s) is where the theory expects the correspondence; None when undetermined."""
    if math.isnan(c) or math.isnan(s) or (math.isfinite(beta) and math.isnan(z)):
        return None
    return abs(c) <= C_LIMIT and abs(s) <= S_LIMIT and (math.isinf(beta) or z <= Z_LIMIT)


def point_row(point: SweepPoint, run_dir: Path) -> dict:
    """The row of one point: its values, its summary's numbers, verdict and the theory's region."""
    row: dict[str, Any] = {"name": point.name, "values": {k: _json(v) for k, v in point.values.items()},
                           "sigma": point.config.sigma, "beta": _json(point.config.beta)}
    try:
        summary = read_json_object(run_dir / "summary.json")
    except (NegdError, OSError):
        summary = {}
    row |= {k: _number(summary.get(k)) for k in FIELDS}
    verdict = summary.get("verdict") if isinstance(summary.get("verdict"), str) else "missing"
    row["verdict"] = _OLD_LABELS.get(verdict, verdict)
    row["theory_inside"] = theory_inside(point.config.beta, row["z_final"], row["c_final"], row["s_final"])
    # an unresolved point neither agrees nor disagrees with the theory's region
    row["agrees"] = None if row["theory_inside"] is None or row["verdict"] not in COLORS \
        or row["verdict"] == "unresolved" else \
        (row["verdict"] == "holds") == row["theory_inside"]
    return row


def _json(value: float) -> float | str:
    return "inf" if value == math.inf else value


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


def _figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    finite_z = [r["z_final"] for r in rows if math.isfinite(r["z_final"]) and r["z_final"] > 0]
    cs = [abs(r["c_final"]) for r in rows if math.isfinite(r["c_final"]) and r["c_final"] != 0]
    z_lo = min(finite_z + [Z_LIMIT]) / 10
    z_inf = max(finite_z + [Z_LIMIT]) * 100  # where beta = inf (z = inf) points are drawn
    c_lo, c_hi = min(cs + [C_LIMIT]) / 10, max(cs + [C_LIMIT]) * 10
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.fill_between([z_lo, Z_LIMIT], c_lo, C_LIMIT, color="tab:green", alpha=0.15, lw=0,
                    label=f"theory: correspondence (|c| <= {C_LIMIT:g}, z <= {Z_LIMIT:g}, "
                          f"|s| <= {S_LIMIT:g})")
    ax.fill_between([z_inf / 3, z_inf * 3], c_lo, C_LIMIT, color="tab:green", alpha=0.15, lw=0)
    ax.axvline(z_inf / 6, color="gray", lw=0.8, ls=":")
    seen = set()
    for r in rows:
        z = z_inf if math.isinf(r["z_final"]) else r["z_final"]
        c = abs(r["c_final"])
        if not (z > 0 and math.isfinite(z) and c > 0 and math.isfinite(c)):
            continue
        verdict = r["verdict"]
        ax.scatter([z], [c], color=COLORS.get(verdict, "tab:gray"), s=50, edgecolor="black",
                   zorder=3, label=None if verdict in seen else f"data: {verdict}")
        seen.add(verdict)
        if abs(r["s_final"]) > S_LIMIT:  # outside the theory's region by the spread alone
            ax.scatter([z], [c], marker="x", color="black", s=70, zorder=4,
                       label=None if "spread" in seen else f"theory: outside by |s| > {S_LIMIT:g}")
            seen.add("spread")
        ax.annotate(r["name"].split("-", 1)[0], (z, c), textcoords="offset points", xytext=(5, 4),
                    fontsize=7)
    ax.set_xlim(z_lo, z_inf * 3)
    # decades of finite z, then the beta = inf column labelled as such
    decades = range(math.ceil(math.log10(z_lo)), math.floor(math.log10(z_inf / 6)) + 1)
    ax.set_xticks([10.0**k for k in decades] + [z_inf], [f"1e{k}" for k in decades] + ["inf"])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylim(c_lo, c_hi)
    ax.text(z_inf, c_hi / 1.5, "beta = inf\n(z = inf)", ha="center", va="top", fontsize=8)
    ax.set_xlabel("z = beta sigma |grad U| (end of run)")
    ax.set_ylabel("|c|, c = sigma tr(H) / (2 |grad U|) (end of run)")
    ax.set_title("Correspondence map: theory (shaded) and data (verdicts)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_sweep_report(sweep_dir: Path, grid: dict, points: list[SweepPoint], states: dict[str, str],
                       wall_seconds: float) -> Path:
    """sweep.json, sweep.md and sweep.png in ``sweep_dir``; returns the path of sweep.md."""
    rows = [point_row(p, sweep_dir / p.name) | {"state": states.get(p.name, "not run")} for p in points]
    figure = sweep_dir / "sweep.png"
    _figure(rows, figure)
    agree = [r["agrees"] for r in rows if r["agrees"] is not None]
    points_wall = sum(r["wall_seconds"] for r in rows if math.isfinite(r["wall_seconds"]))
    # Points where the data say the correspondence does not hold, with a theory region to place them in.
    failing = [r for r in rows if r["verdict"] == "fails" and r["theory_inside"] is not None]
    write_json(sweep_dir / "sweep.json", {
        "grid": {k: [_json(v) for v in vs] for k, vs in grid.items()},
        "region": {"c_max": C_LIMIT, "z_max_finite_beta": Z_LIMIT, "s_max": S_LIMIT}, "points": rows,
        "agreements": sum(agree), "compared": len(agree),
        "failing_outside": sum(not r["theory_inside"] for r in failing), "failing": len(failing),
        "wall_seconds": wall_seconds, "points_wall_seconds": points_wall,
        "figure": figure.name})
    keys = list(grid)
    lines = ["# negd sweep: correspondence map", "",
             f"Grid: {', '.join(f'{k} = ' + ', '.join(_fmt(v, 4) for v in vs) for k, vs in grid.items())} "
             f"({len(points)} points; their runs took {points_wall:.0f} s of wall time in all, "
             f"this invocation {wall_seconds:.0f} s).", "",
             f"Theory's region (docs/theory.md): |c| <= {C_LIMIT:g}, |s| <= {S_LIMIT:g} and, at finite beta, "
             f"z <= {Z_LIMIT:g} (z, c, s at the end of each run). The data's verdict and the theory's region "
             f"agree at {sum(agree)} of {len(agree)} points; of the {len(failing)} points where the "
             f"correspondence does not hold, {sum(not r['theory_inside'] for r in failing)} lie outside the "
             "theory's region.", "",
             f"![map]({figure.name})", "",
             "| point | " + " | ".join(keys) + " | sigma | Delta_c/change | loss gap | acceptance (pred.) "
             "| z | c | s | verdict | theory | state |",
             "|" + "---|" * (len(keys) + 11)]
    for r in rows:
        inside = {True: "inside", False: "outside", None: "n/a"}[r["theory_inside"]]
        lines.append(
            f"| {r['name'].split('-', 1)[0]} | " + " | ".join(_fmt(r["values"][k], 4) for k in keys)
            + f" | {_fmt(r['sigma'])} | {_fmt(r['delta_ratio'])} | {_fmt(r['loss_gap_relative'])} "
            f"| {_fmt(r['acceptance_measured'])} ({_fmt(r['acceptance_predicted'])}) | {_fmt(r['z_final'])} "
            f"| {_fmt(r['c_final'])} | {_fmt(r['s_final'])} | {r['verdict']} | {inside} | {r['state']} |")
    lines += ["", "Each point's run directory (report.md, summary.json, figures) is the folder named after "
              "the point."]
    path = sweep_dir / "sweep.md"
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path
