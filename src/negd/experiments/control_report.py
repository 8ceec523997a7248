"""Figures and report.md of ``negd reproduce control`` (:mod:`negd.experiments.control`).

``figures/returns.png``: held-out return (mean +- SE) of every arm against environment steps played in
training (left) and process CPU seconds (right), one row per environment, with gymnasium's reward
threshold where it has one (CartPole-v1: 475). Written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from negd.analysis.figures import _new
from negd.runfiles import atomic_write_bytes

__all__ = ["write_report", "THRESHOLDS"]

THRESHOLDS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}  # the targets (CartPole: gymnasium's)


def _plot(summary: dict, path: Path) -> Path:
    envs = list(summary["envs"].values())
    fig, axes = _new(2, len(envs), size=(10.0, 3.6 * len(envs)))
    for row, env in enumerate(envs):
        for col, (key, label) in enumerate((("env_steps", "environment steps (training)"),
                                            ("cpu_seconds", "CPU seconds"))):
            ax = axes[2 * row + col]
            for name, arm in env["arms"].items():
                rows = arm["snapshots"]
                x = np.asarray([r[key] for r in rows], dtype=np.float64)
                y = np.asarray([r["return_mean"] for r in rows], dtype=np.float64)
                se = np.nan_to_num(np.asarray([r["return_se"] for r in rows], dtype=np.float64))
                style = "--" if name == "mean-field twin" else "-"
                ax.plot(x, y, style, label=name)
                ax.fill_between(x, y - se, y + se, alpha=0.2)
            if env["env"] in THRESHOLDS:
                ax.axhline(THRESHOLDS[env["env"]], color="k", lw=0.8, ls=":", label="target")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{env['env']} held-out return")
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def write_report(run_dir: Path, summary: dict) -> Path:
    _plot(summary, run_dir / "figures" / "returns.png")
    cfg = summary["config"]
    lines = [f"# Control without a gradient: {', '.join(summary['envs'])} ({summary['scale']} scale, "
             f"seed {summary['seed']})", "",
             "Neuroevolution (paired episodes), (1+K) population and aMC (fixed episodes) train tanh MLP "
             "policies, every realization from one start per environment (below); the mean-field twin "
             "follows neuroevolution's expected step "
             "x <- x + E[dx | x] (M antithetic proposals, no gradient). Returns are on held-out episodes "
             f"({cfg['heldout_episodes']} per realization at the end). Versions: "
             + ", ".join(f"{k} {v}" for k, v in cfg["versions"].items()) + ".", "",
             "![returns](figures/returns.png)", "", "## Verdict", ""]
    for env in summary["envs"].values():
        ne = env["arms"]["neuroevolution"]["summary"]["heldout"]
        target = THRESHOLDS.get(env["env"])
        met = "" if target is None else (
            f"; target {target:g} {'met' if ne['return_mean'] >= target else 'not met'} by the ensemble mean")
        lines.append(f"- {env['env']}: neuroevolution held-out return {_fmt(ne['return_mean'])} +- "
                     f"{_fmt(ne['return_se'])} (best realization {_fmt(ne['return_best'])}){met}; "
                     f"{env['correspondence']['sentence']}")
    lines.append("")
    for env in summary["envs"].values():
        s = env["settings"]
        target = THRESHOLDS.get(env["env"])
        lines += [f"## {env['env']}", "",
                  f"MLP {s['width']} tanh units ({env['n_params']} parameters), sigma {s['sigma']}, "
                  f"E = {s['episodes']} episodes per loss, {s['steps']} steps, R = {s['realizations']}, "
                  f"K = {s['k']}, M = {s['twin_proposals']}; start: "
                  + ("zeros" if not s.get("init") else f"one x ~ N(0, {s['init']:g}^2) shared by all "
                     f"(paper_init, seed {summary['seed']})") + ".", "",
                  "| arm | held-out return (mean +- SE) | best realization | env steps | CPU s | "
                  "acceptance | ties |", "|---|---|---|---|---|---|---|"]
        for name, arm in env["arms"].items():
            a, h = arm["summary"], arm["summary"]["heldout"]
            lines.append(f"| {name} | {_fmt(h['return_mean'])} +- {_fmt(h['return_se'])} | "
                         f"{_fmt(h['return_best'])} | {a['env_steps']:,} | {_fmt(a['cpu_seconds'], 0)} | "
                         f"{_fmt(a['acceptance'], 3)} | {_fmt(a['tie_fraction'], 3)} |")
        ne = env["arms"]["neuroevolution"]["summary"]
        lines += ["", f"- Correspondence: {env['correspondence']['sentence']}."]
        if target is not None:
            met = ne["heldout"]["return_mean"] >= target
            lines.append(f"- Target {target:g}: neuroevolution's ensemble mean "
                         f"{_fmt(ne['heldout']['return_mean'])} {'meets' if met else 'does not meet'} it "
                         f"(best realization {_fmt(ne['heldout']['return_best'])}).")
        lines.append(f"- Ties during neuroevolution: {100 * ne['tie_fraction']:.1f}% of proposals had "
                     f"exactly the parent's loss.")
        if "tie_scan" in ne:
            lines.append(f"- {ne['tie_scan']['message']}.")
        lines.append("")
    text = "\n".join(lines)
    atomic_write_bytes(run_dir / "report.md", text.encode())
    return run_dir / "report.md"
