"""Figures and report.md of a classification run (:mod:`negd.experiments.classification`).

* ``figures/accuracy.png``: train and test accuracy of NE (mean of the realizations +- SE), its
  twin and Adam against loss evaluations (per network) and against wall time;
* ``figures/loss.png``: the NE mean loss +- SE and the twin's against t = alpha x steps, Adam's
  against loss evaluations;
* ``figures/delta.png``: Delta_c / param_change +- 2 SE against t, with the verdict's thresholds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from negd.analysis.figures import _new, _save
from negd.analysis.metrics import RATIO_FAILS, RATIO_HOLDS
from negd.runfiles import atomic_write_bytes

__all__ = ["write_report"]


def _col(rows: list[dict], key: str) -> np.ndarray:
    return np.asarray([r[key] for r in rows], dtype=np.float64)


def _plot_accuracy(rows: list[dict], adam: list[dict], path: Path) -> Path:
    fig, axes = _new(2, 1, size=(11.0, 4.5))
    for ax, (ne_x, tw_x, ad_x, label) in zip(axes, (
            ("ne_loss_evaluations", "twin_gradient_evaluations", "loss_evaluations",
             "loss evaluations per network (gradient evaluations for twin and Adam)"),
            ("ne_wall_seconds", "twin_wall_seconds", "wall_seconds",
             "wall time (s; NE: the whole ensemble)"))):
        for split, style in (("train", "--"), ("test", "-")):
            m, se = _col(rows, f"ne_{split}_accuracy"), _col(rows, f"ne_{split}_accuracy_se")
            x = _col(rows, ne_x)
            ax.plot(x, m, style, color="C0", label=f"NE mean ({split})")
            ax.fill_between(x, m - se, m + se, color="C0", alpha=0.2)
            ax.plot(_col(rows, tw_x), _col(rows, f"twin_{split}_accuracy"), style, color="C1",
                    label=f"normalized GD twin ({split})")
            ax.plot(_col(adam, ad_x), _col(adam, f"{split}_accuracy"), style, color="C2",
                    label=f"Adam ({split})")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _plot_loss(rows: list[dict], adam: list[dict], path: Path) -> Path:
    fig, axes = _new(2, 1, size=(11.0, 4.5))
    t, m, se = _col(rows, "t"), _col(rows, "ne_loss_mean"), _col(rows, "ne_loss_se")
    axes[0].plot(t, m, color="C0", label="NE mean loss")
    axes[0].fill_between(t, m - se, m + se, color="C0", alpha=0.2)
    axes[0].plot(t, _col(rows, "twin_loss"), "--", color="C1", label="normalized GD twin")
    axes[0].set_xlabel("t = alpha x steps")
    axes[1].plot(_col(rows, "ne_loss_evaluations"), m, color="C0", label="NE mean loss")
    axes[1].plot(_col(adam, "loss_evaluations"), _col(adam, "loss"), color="C2", label="Adam")
    axes[1].set_xlabel("loss evaluations per network")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("cross-entropy (train)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def _plot_delta(arms: list[tuple[str, list[dict]]], path: Path) -> Path:
    fig, axes = _new()
    ax = axes[0]
    for k, (label, rows) in enumerate(arms):
        t, change = _col(rows, "t")[1:], _col(rows, "param_change")[1:]
        ratio = _col(rows, "delta_corrected")[1:] / change
        err = 2 * _col(rows, "delta_corrected_se")[1:] / change
        ax.errorbar(t, ratio, yerr=err, fmt="o-", ms=3, color=f"C{k}",
                    label=f"{label}: Delta_c / param_change (+- 2 SE)")
    ax.axhline(RATIO_HOLDS, color="g", ls=":", label=f"holds below {RATIO_HOLDS}")
    ax.axhline(RATIO_FAILS, color="r", ls=":", label=f"fails at {RATIO_FAILS}")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("t = alpha x steps")
    ax.set_ylabel("Delta_c / param_change")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _fmt_reach(value) -> str:
    return "not reached" if value is None else f"{value:,}"


def _window_text(window: dict, alpha: float) -> str:
    step = lambda t: f"t = {t:.3g} (step {round(t / alpha):,})"  # noqa: E731
    text = (f"Delta_c/param_change holds (2-SE upper bound < {RATIO_HOLDS}) at {window['holding_snapshots']} "
            f"of {window['snapshots']} snapshots")
    if window["last_t_holding"] is not None:
        text += f", the last at {step(window['last_t_holding'])}"
    fails = window["fails_from_t"]
    return text + (f"; it resolvably reaches {RATIO_FAILS} from {step(fails)}" if fails is not None
                   else f"; it never resolvably reaches {RATIO_FAILS}")


def _verdict_lines(title: str, summary: dict, alpha: float) -> list[str]:
    last = summary["ne_final"]
    return [f"- {title}: **{summary['verdict']}** at t = {last['t']:.4g}",
            *[f"  - {reason}" for reason in summary["verdict_reasons"]],
            f"  - {_window_text(summary['correspondence_window'], alpha)}",
            f"  - regime at the twin's final parameters: c = {last['c']:.3g}, drift factor "
            f"{last['drift_factor']:.3g} (the small-sigma limit needs c << 1)"]


def write_report(run_dir: Path, exp, rows: list[dict], small_rows: list[dict], adam: list[dict],
                 summary: dict) -> Path:
    figures = run_dir / "figures"
    small = summary["small_sigma_arm"]
    _plot_accuracy(rows, adam, figures / "accuracy.png")
    _plot_loss(rows, adam, figures / "loss.png")
    _plot_delta([(f"sigma = {exp.sigma:g}", rows), (f"sigma = {small['sigma']:g}", small_rows)],
                figures / "delta.png")
    last, ad = rows[-1], adam[-1]
    reach = summary["test_accuracy_reached_after_loss_evaluations"]
    lines = [
        f"# negd reproduce {exp.name} ({exp.scale})", "",
        f"{exp.task}: MLP {exp.depth} x {exp.width} {exp.activation}, {summary['n_params']} parameters, "
        f"softmax cross-entropy. Neuroevolution at beta = inf, sigma = {exp.sigma:g}, R = {exp.realizations} "
        f"realizations from one shared PyTorch-default network (seed {exp.seed}), {exp.ne_steps} steps; "
        "twin: "
        f"normalized gradient descent, alpha = sigma/sqrt(2 pi) = {exp.alpha:.4g}; Adam: lr {exp.adam_lr:g}, "
        f"full batch, {exp.adam_steps} steps.", "",
        "## Verdict", "",
        *_verdict_lines(f"sigma = {exp.sigma:g} (the main arm)", summary, exp.alpha),
        *_verdict_lines(f"sigma = {small['sigma']:g} (a short arm, {small['ne_steps']:,} steps, closer to "
                        "the small-sigma limit)", small, exp.alpha / exp.check_factor), "",
        "## Final numbers", "",
        "| | train loss | train accuracy | test accuracy | loss evaluations per network | wall (s) |",
        "|---|---|---|---|---|---|",
        f"| NE (mean of {exp.realizations}) | {last['ne_loss_mean']:.4f} +- {last['ne_loss_se']:.4f} | "
        f"{last['ne_train_accuracy']:.4f} | {last['ne_test_accuracy']:.4f} +- "
        f"{last['ne_test_accuracy_se']:.4f} | "
        f"{last['ne_loss_evaluations']:,} | {last['ne_wall_seconds']:.1f} |",
        f"| normalized GD twin | {last['twin_loss']:.4f} | {last['twin_train_accuracy']:.4f} | "
        f"{last['twin_test_accuracy']:.4f} | {last['twin_gradient_evaluations']:,} (gradients) | "
        f"{last['twin_wall_seconds']:.1f} |",
        f"| Adam | {ad['loss']:.4f} | {ad['train_accuracy']:.4f} | {ad['test_accuracy']:.4f} | "
        f"{ad['loss_evaluations']:,} (gradients) | {ad['wall_seconds']:.1f} |", "",
        "Test accuracy first reached at a snapshot after (loss evaluations per network):", "",
        "| level | NE | twin | Adam |", "|---|---|---|---|",
        *[f"| {level} | {_fmt_reach(r['ne'])} | {_fmt_reach(r['twin'])} | {_fmt_reach(r['adam'])} |"
          for level, r in reach.items()], "",
        f"Acceptance over the last interval: {last['acceptance']:.3f}. Total wall time "
        f"{summary['total_wall_seconds']:.0f} s.", "",
        "## Figures", "", "![accuracy](figures/accuracy.png)", "", "![loss](figures/loss.png)", "",
        "![delta](figures/delta.png)", "",
    ]
    path = run_dir / "report.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    return path
