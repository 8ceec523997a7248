"""Figures and report.md of ``negd reproduce variants`` (:mod:`negd.experiments.variants`).

* ``figures/loss.png``: each rule's mean full-data loss +- SE and its twin's against loss evaluations
  per realization (one panel per rule);
* ``figures/delta.png``: Delta_c / param_change +- 2 SE against t for every rule, with the verdict's
  thresholds.

Every file is written atomically (a temporary file renamed into place).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from negd.analysis.figures import _new
from negd.analysis.metrics import RATIO_FAILS, RATIO_HOLDS
from negd.runfiles import atomic_write_bytes

__all__ = ["write_report"]


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.asarray([r[key] for r in rows], dtype=np.float64)


def _save_atomic(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _plot_loss(results: dict[str, dict], path: Path) -> Path:
    fig, axes = _new(len(results), 1, size=(4.0 * len(results), 3.8))
    for ax, (name, res) in zip(axes, results.items()):
        rows = res["snapshots"]
        x, m, se = _col(rows, "loss_evaluations"), _col(rows, "loss_mean"), _col(rows, "loss_se")
        ax.plot(x, m, color="C0", label=f"{name} (mean +- SE)")
        ax.fill_between(x, m - se, m + se, color="C0", alpha=0.25)
        ax.plot(x, _col(rows, "twin_loss"), "--", color="C1", label=res["summary"]["twin"])
        ax.set_xlabel("loss evaluations per realization")
        ax.set_title(f"{name}: {res['summary']['verdict_label']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("full-data MSE")
    return _save_atomic(fig, path)


def _plot_delta(results: dict[str, dict], path: Path) -> Path:
    """All rules (left) and the same on the verdict's scale (right), where the twins that hold are visible."""
    fig, axes = _new(2, 1, size=(12.0, 4.5))
    for ax in axes:
        for k, (name, res) in enumerate(results.items()):
            rows = res["snapshots"][1:]
            change = _col(rows, "param_change")
            ax.errorbar(_col(rows, "t"), _col(rows, "delta_corrected") / change,
                        yerr=2 * _col(rows, "delta_corrected_se") / change, fmt="o-", ms=3, color=f"C{k}",
                        label=name)
        ax.axhline(RATIO_HOLDS, color="g", ls=":", label=f"holds below {RATIO_HOLDS}")
        ax.axhline(RATIO_FAILS, color="r", ls=":", label=f"fails at {RATIO_FAILS}")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlabel("t = lambda alpha x steps")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Delta_c / param_change (+- 2 SE)")
    axes[1].set_ylim(-0.05, 0.1)
    axes[1].set_title("zoom on the verdict's thresholds", fontsize=9)
    axes[0].legend(fontsize=8)
    return _save_atomic(fig, path)


def _f(value, fmt: str = ".3g") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _tables(summary: dict) -> list[str]:
    rules = summary["rules"]
    lines = ["| rule | twin | verdict | loss +- SE | twin loss | gap (SE of gap) "
             "| Delta_c/param_change +- SE |",
             "|---|---|---|---|---|---|---|"]
    for name, s in rules.items():
        fin = s["final"]
        lines.append(f"| {name} | {s['twin']} | **{s['verdict_label']}** | {s['loss_mean']:.5f} +- "
                     f"{s['loss_se']:.5f} | {s['twin_loss']:.5f} | "
                     f"{s['loss_gap']:+.5f} ({s['loss_gap_se']:.5f}) | "
                     f"{fin['delta_ratio']:.3g} +- {fin['delta_ratio_se']:.2g} |")
    lines += ["", "Drift per loss evaluation, per realization: measured U(0) - <U(t)> over the run, and "
              "the twin's U(0) - U_twin(t) (the theory's drift along the path), each over the rule's "
              "evaluations. Efficiency at the same loss: the evaluations to reach the mean loss "
              f"{summary['target_loss']:.5f} (the highest final loss of all rules), NE's over the rule's, "
              "against the linear-loss theory at beta = inf (drift_per_evaluation(K)/phi(0) for the "
              "populations, 1/2 for the paired mode, none for aMC).", "",
              "| rule | evaluations per step | drift per evaluation | twin's | evaluations to target | "
              "efficiency vs NE | theory |", "|---|---|---|---|---|---|---|"]
    for name, s in rules.items():
        lines.append(f"| {name} | {s['evaluations_per_step']} | {_f(s['drift_per_evaluation_run'])} | "
                     f"{_f(s['drift_per_evaluation_twin'])} | {_f(s['evaluations_to_target'], ',.0f')} | "
                     f"{_f(s['measured_ratio_to_neuroevolution'])} | "
                     f"{_f(s['theory_ratio_to_neuroevolution'])} |")
    return lines


def write_report(run_dir: Path, exp, results: dict[str, dict], summary: dict) -> Path:
    figures = run_dir / "figures"
    _plot_loss(results, figures / "loss.png")
    _plot_delta(results, figures / "delta.png")
    cfg = summary["config"]
    lines = [
        f"# negd reproduce variants ({exp.scale})", "",
        f"Shallow set-up: sin 2 pi t, 1-30-1 tanh MLP without output bias ({cfg['n_params']} parameters), "
        f"paper init sigma0 = {exp.sigma0:g} (seed {exp.seed}, float64), beta = inf, sigma = sqrt(2 pi) "
        f"lambda "
        f"alpha = {exp.sigma:.4g} (alpha = {exp.alpha:g}, lambda = {exp.lam:g}). Every rule: R = "
        f"{exp.realizations} realizations (seed {exp.seed}) from the same x(0), {cfg['steps']:,} steps, "
        f"t = lambda alpha x steps up to {exp.t_final:g}, next to its twin from the same x(0). Population "
        f"K = {exp.k}; aMC epsilon = {exp.epsilon:g}; minibatch B = {exp.batch_size} of 1000 points. "
        "Losses are full-data MSE. The paired-minibatch twin is an ensemble on the same batches: its "
        "Delta_c is that of the paired differences.", "",
        "## Verdict", "",
        *[f"- {name}: **{s['verdict']}**" for name, s in summary["rules"].items()], "",
        "## Final numbers", "", *_tables(summary), "",
        "Verdict reasons (negd.analysis.metrics.verdict):", "",
    ]
    for name, s in summary["rules"].items():
        lines += [f"- {name}", *[f"  - {r}" for r in s["verdict_reasons"]]]
    lines += ["", f"Wall time {summary['total_wall_seconds']:.0f} s ("
              + ", ".join(f"{n} {s['wall_seconds']:.0f} s" for n, s in summary["rules"].items())
              + "). Versions: " + ", ".join(f"{k} {v}" for k, v in cfg["versions"].items()
                                            if k in ("negd", "torch", "numpy", "python")) + ".", "",
              "## Figures", "", "![loss](figures/loss.png)", "", "![delta](figures/delta.png)", ""]
    path = run_dir / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path
