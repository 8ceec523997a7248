"""Figures of a run, in the style of Whitelam et al., Nat. Commun. 12, 6317 (2021), Figs. 1-2.

Drawn with matplotlib's object API on an Agg canvas (no pyplot: the caller's backend is never
changed), saved as PNG. Each function returns the path it wrote, or None when the run has no
data for it (e.g. an arm without snapshots).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from negd.analysis.metrics import C_SMALL, SigmaTrend
from negd.analysis.rundir import ENSEMBLE_TWINS, TWIN_LABELS, ArmData

__all__ = ["plot_weights", "plot_loss", "plot_delta", "plot_params_scatter", "plot_regime"]

ARM_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5")


def _new(ncols: int = 1, nrows: int = 1, size=(7.0, 4.5)) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=size, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _log_scale(ax, axis: str, *values: np.ndarray) -> bool:
    """A log ``axis`` ("x" or "y") when the data drawn on it hold a finite positive value; else the axis
    stays linear (degenerate data: one realization, an all-zero or all-NaN series) and says so."""
    drawn = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in values]) if values else []
    if np.any(np.isfinite(drawn) & (np.asarray(drawn) > 0)):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    ax.text(0.5, 0.9, "no positive finite values: linear scale", ha="center", fontsize=8,
            transform=ax.transAxes)
    return False


def _twin_label(arm: ArmData) -> str:
    return TWIN_LABELS[arm.twin]


def _title(arm: ArmData) -> str:
    return f"arm '{arm.label}' (sigma = {arm.sigma:.3g}, R = {arm.realizations})"


def plot_weights(arm: ArmData, path: Path, n_weights: int = 4) -> Path | None:
    """Selected parameters (largest change under GD) against t: single NE trajectories (thin),
    ensemble mean (solid) and gradient descent or the Langevin ensemble mean (dashed)."""
    a = arm.arrays
    if a is None:
        return None
    t, gd, mean = a["t"], a["gd_params"], a["param_mean"]
    traj = a.get("trajectories")
    chosen = np.argsort(-np.abs(gd[-1] - gd[0]))[:n_weights]
    ncols = 2 if len(chosen) > 1 else 1
    nrows = math.ceil(len(chosen) / ncols)
    fig, axes = _new(ncols, nrows, size=(9.0, 3.2 * nrows))
    for ax, i in zip(axes, chosen):
        if traj is not None and traj.ndim == 3 and traj.shape[1] > 0:
            for k in range(traj.shape[1]):
                ax.plot(t, traj[:, k, i], color="0.6", lw=0.6, label="NE trajectories" if k == 0 else None)
        ax.plot(t, mean[:, i], color="C0", lw=1.8, label="NE ensemble mean <x>")
        ax.plot(t, gd[:, i], color="k", lw=1.5, ls="--", label=_twin_label(arm))
        ax.set_title(f"parameter {i}")
        ax.set_xlabel("t")
        ax.set_ylabel(f"x_{i}")
    for ax in axes[len(chosen) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Parameters with the largest change, {_title(arm)}")
    return _save(fig, path)


def plot_loss(arm: ArmData, path: Path) -> Path | None:
    """Loss against t (log y): NE mean with a +-SE band, loss of the averaged network, GD."""
    a = arm.arrays
    if a is None:
        return None
    t = a["t"]
    fig, (ax,) = _new()
    mean, se = a["ne_loss_mean"], a["ne_loss_se"]
    ax.plot(t, mean, color="C0", lw=1.8, label="NE  <U(x)>  (mean over realizations)")
    ax.fill_between(t, mean - se, mean + se, color="C0", alpha=0.3, lw=0, label="+- 1 SE")
    ax.plot(t, a["loss_of_mean"], color="C2", lw=1.4, label="U(<x>)  (averaged network)")
    if arm.twin in ENSEMBLE_TWINS:
        gd_loss, gd_se = a["gd_loss"], a["gd_loss_se"]
        ax.plot(t, gd_loss, color="k", ls="--", lw=1.5, label=f"{_twin_label(arm)} <U(x)>_L")
        ax.fill_between(t, gd_loss - gd_se, gd_loss + gd_se, color="k", alpha=0.15, lw=0,
                        label="+- 1 SE (twin)")
        ax.plot(t, a["gd_loss_of_mean"], color="0.4", ls=":", lw=1.2,
                label="U(<x>_L)  (averaged twin network)")
    else:
        ax.plot(t, a["gd_loss"], color="k", ls="--", lw=1.5, label=_twin_label(arm))
    _log_scale(ax, "y", mean, a["loss_of_mean"], a["gd_loss"])
    ax.set_xlabel("t")
    ax.set_ylabel("loss U")
    ax.set_title(f"Loss, {_title(arm)}")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_delta(
    arms: list[ArmData], series: dict[int, dict[str, np.ndarray]], trend: SigmaTrend | None, path: Path
) -> Path | None:
    """(a) raw Delta and its floor (log y); (b) corrected Delta +- SE per arm; (c) Delta_c vs sigma."""
    avail = [a for a in arms if a.n_snapshots > 0]
    if not avail:
        return None
    fig, (ax_raw, ax_cor, ax_sig) = _new(3, 1, size=(15.0, 4.5))
    for a in avail:
        s = series[a.index]
        color = ARM_COLORS[a.index % len(ARM_COLORS)]
        pos = s["t"] > 0
        ax_raw.plot(s["t"][pos], s["delta"][pos], color=color, lw=1.6, label=f"Delta, {a.label}")
        ax_raw.plot(
            s["t"][pos], s["delta_floor"][pos], color=color, lw=1.0, ls=":", label=f"floor, {a.label}"
        )
        ax_cor.plot(s["t"], s["delta_corrected"], color=color, lw=1.6, label=a.label)
        ax_cor.fill_between(
            s["t"],
            s["delta_corrected"] - s["delta_corrected_se"],
            s["delta_corrected"] + s["delta_corrected_se"],
            color=color,
            alpha=0.25,
            lw=0,
        )
    raw = [series[a.index][k][series[a.index]["t"] > 0] for a in avail for k in ("delta", "delta_floor")]
    _log_scale(ax_raw, "y", *raw)
    ax_raw.set_xlabel("t")
    ax_raw.set_ylabel("Delta(t)")
    ax_raw.set_title("Raw Delta (solid) and statistical floor (dotted)")
    ax_raw.legend(fontsize=7)
    ax_cor.axhline(0.0, color="0.5", lw=0.8)
    ax_cor.set_xlabel("t")
    ax_cor.set_ylabel("Delta - floor")
    ax_cor.set_title("Corrected Delta, band = +- 1 SE")
    ax_cor.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax_cor.legend(fontsize=8)
    if trend is not None and trend.sigma:
        sig = np.array(trend.sigma)
        dc = np.array(trend.delta_corrected)
        se = np.array(trend.delta_corrected_se)
        pos = dc > 0
        if pos.any():
            ax_sig.errorbar(
                sig[pos],
                dc[pos],
                yerr=np.minimum(se[pos], 0.999 * dc[pos]),
                fmt="o",
                color="C0",
                capsize=3,
                label="Delta_c +- SE",
            )
        if (~pos).any():  # consistent with zero: show the 2-SE upper limit
            ax_sig.plot(sig[~pos], 2 * se[~pos], "v", color="C3", label="Delta_c <= 0: 2-SE upper limit")
        if math.isfinite(trend.slope):
            x = np.geomspace(sig.min(), sig.max(), 20)
            ok = pos & (se > 0)
            w = (dc[ok] / se[ok]) ** 2
            intercept = np.sum(w * (np.log(dc[ok]) - trend.slope * np.log(sig[ok]))) / np.sum(w)
            ax_sig.plot(
                x,
                np.exp(intercept) * x**trend.slope,
                "k--",
                lw=1,
                label=f"fit: slope {trend.slope:.2f} +- {trend.slope_se:.2f}",
            )
        _log_scale(ax_sig, "x", sig)
        _log_scale(ax_sig, "y", dc[pos], 2 * se[~pos])
        ax_sig.legend(fontsize=8)
        ax_sig.set_title(f"Corrected Delta at t = {trend.t:.3g} vs sigma")
    else:
        ax_sig.text(0.5, 0.5, "no arm with snapshots after t = 0", ha="center", transform=ax_sig.transAxes)
    ax_sig.set_xlabel("sigma")
    ax_sig.set_ylabel("Delta - floor")
    return _save(fig, path)


def plot_params_scatter(arm: ArmData, path: Path) -> Path | None:
    """All parameters of the averaged network against the GD network at the final time."""
    a = arm.arrays
    if a is None:
        return None
    gd, mean, x0 = a["gd_params"][-1], a["param_mean"][-1], a["gd_params"][0]
    fig, (ax,) = _new(size=(5.5, 5.5))
    ax.scatter(gd, x0, s=8, color="0.7", label="initial x(0)", zorder=1)
    ax.scatter(gd, mean, s=10, color="C0", label="NE ensemble mean <x>", zorder=2)
    lo, hi = float(np.min([gd.min(), mean.min()])), float(np.max([gd.max(), mean.max()]))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x", zorder=3)
    ax.set_xlabel(f"{_twin_label(arm)} <x>_L at t final" if arm.twin in ENSEMBLE_TWINS
                  else f"x_twin ({_twin_label(arm)}) at t final")
    ax.set_ylabel("parameter value")
    ax.set_title(f"All {gd.size} parameters at t = {a['t'][-1]:.3g}\n{_title(arm)}", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_regime(arms: list[ArmData], series: dict[int, dict[str, np.ndarray]], path: Path) -> Path | None:
    """Acceptance measured (+-SE) vs predicted, and the regime parameters z, c against t."""
    avail = [a for a in arms if a.n_snapshots > 0]
    if not avail:
        return None
    fig, (ax_acc, ax_reg) = _new(2, 1, size=(12.0, 4.5))
    any_reg = False
    for a in avail:
        s = series[a.index]
        color = ARM_COLORS[a.index % len(ARM_COLORS)]
        ax_acc.errorbar(
            s["t"],
            s["acceptance"],
            yerr=s["acceptance_se"],
            fmt="o",
            ms=3,
            color=color,
            capsize=2,
            label=f"measured, {a.label}",
        )
        ax_acc.plot(
            s["t"], s["acceptance_predicted"], color=color, lw=1.2, ls="--", label=f"predicted, {a.label}"
        )
        for key, ls in (("c", "-"), ("z", ":")):
            v = s[key]
            ok = np.isfinite(v) & (v > 0)
            if ok.any():
                any_reg = True
                ax_reg.plot(s["t"][ok], v[ok], color=color, ls=ls, lw=1.5, label=f"{key}, {a.label}")
    ax_acc.set_xlabel("t")
    ax_acc.set_ylabel("acceptance rate")
    ax_acc.set_title("Acceptance: measured (points, over each interval) vs theory (dashed)")
    ax_acc.legend(fontsize=7)
    if any_reg:
        ax_reg.axhline(C_SMALL, color="0.5", lw=0.8, ls="-.", label=f"threshold {C_SMALL}")
        ax_reg.set_yscale("log")
        ax_reg.legend(fontsize=7)
    else:
        ax_reg.text(
            0.5,
            0.5,
            "regime not computed (z, c are NaN or infinite)",
            ha="center",
            transform=ax_reg.transAxes,
        )
    ax_reg.set_xlabel("t")
    ax_reg.set_ylabel("z = beta sigma |g|,  c = sigma tr(H) / (2|g|)")
    ax_reg.set_title("Regime along the run (z = inf at beta = inf is not drawn)")
    return _save(fig, path)
