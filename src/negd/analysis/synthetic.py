"""Synthetic run directories with a known Delta, written exactly as the run-directory contract says.

Used by the tests of the analysis and the runner, and handy for trying the report without a run.
The "network" is a quadratic loss U(x) = (1/N) |x - x*|^2, gradient descent relaxes as
x_GD(t) = x* + (x(0) - x*) exp(-t), and the R "neuroevolution" realizations at time t are
Gaussian: x = x_GD(t) + b(t) + sqrt(v(t)) eps, with a systematic gap b(t) = bias_i (t / T) u
(u fixed, mean(u^2) = 1, so the true Delta is (bias_i t / T)^2 for arm i) and a diffusive variance
v(t) = variance * (sigma_i / sigma_0) * t / T. The bias of arm i scales with its sigma, so the
true Delta-vs-sigma slope is 2 on log-log axes. The regime columns are the exact values of this
loss: |g| = 2 |x_GD - x*| / N, tr H = 2, c = sigma tr(H) / (2 |g|), acceptance Phi(-c) (beta = inf).

With ``twin="langevin"`` the twin is an ensemble of ``twin_realizations`` Gaussian realizations
x_GD(t) + sqrt(v(t)) eps (no gap: the true Delta is unchanged), stored as its mean, variance, mean
loss +- SE and loss of the mean, as a finite-beta run with a Langevin twin writes them (beta = 1000
in config.json, z = beta sigma |g|; the acceptance columns keep their beta = inf form).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from negd.analysis.rundir import ENSEMBLE_TWINS, REQUIRED_ARRAYS

__all__ = ["make_run_dir", "make_placed_run", "true_delta"]


def true_delta(bias: float, sigma_ratio: float, t: float, t_final: float) -> float:
    """The exact (infinite-ensemble) Delta of arm with sigma = sigma_0 * sigma_ratio at time t."""
    return (bias * sigma_ratio * t / t_final) ** 2


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _phi_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def make_run_dir(
    path: Path,
    *,
    n_params: int = 12,
    realizations: int = 40,
    n_snapshots: int = 11,
    n_arms: int = 3,
    bias: float = 1e-2,
    variance: float = 1e-4,
    t_final: float = 1.0,
    trajectories: int = 4,
    seed: int = 0,
    interrupted: bool = False,
    experiment: str = "synthetic",
    twin: str = "noiseless",
    twin_realizations: int = 20,
    branches: float = 0.0,
) -> Path:
    """Write a contract-conforming run directory at ``path`` and return ``path``.

    ``n_snapshots`` counts rows including t = 0. With ``interrupted=True`` the status is
    "interrupted", arm 0 keeps only its first half of snapshots (it stopped early) and the last
    arm was never started (no snapshots.npz); the arms in between are complete.
    """
    if twin not in ("noiseless", *ENSEMBLE_TWINS):
        raise ValueError(f"twin: must be 'noiseless' or one of {ENSEMBLE_TWINS}, got {twin!r}")
    langevin = twin in ENSEMBLE_TWINS  # an ensemble twin, written as a Langevin one
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    alpha, lam0 = 1e-4, 1.0
    sigma0 = math.sqrt(2 * math.pi) * lam0 * alpha
    x0 = rng.normal(0.0, 0.5, n_params)
    x_star = rng.normal(0.0, 0.5, n_params)
    direction = rng.normal(size=n_params)
    direction /= math.sqrt(float(np.mean(direction**2)))
    branch_dir = np.zeros(n_params)
    branch_dir[: max(1, n_params // 4)] = 1.0
    branch_dir /= math.sqrt(float(np.mean(branch_dir**2)))
    signs = np.where(np.arange(realizations) % 2 == 0, 1.0, -1.0)[:, None]

    def loss(x: np.ndarray) -> np.ndarray:
        return np.mean((x - x_star) ** 2, axis=-1)

    arms_cfg = []
    for i in range(n_arms):
        lam = lam0 / 2**i
        ne_steps = int(round(t_final / (alpha * lam)))
        arms_cfg.append(
            {
                "label": "sigma" if i == 0 else f"sigma/{2**i}",
                "sigma": sigma0 / 2**i,
                "lambda": lam,
                "ne_steps": ne_steps,
                "gd_steps": int(round(t_final / alpha)),
                "t_final": t_final,
            }
        )
    config = {
        "experiment": experiment,
        "scale": "custom",
        "network": {"depth": 1, "width": n_params, "output_bias": False},
        "n_params": n_params,
        "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.5},
        "beta": 1000.0 if langevin else "inf",
        "alpha": alpha,
        "lambda": lam0,
        "gd_rule": "gradient_descent" if langevin else "normalized",
        "twin": twin,
        **({"twin_realizations": twin_realizations} if langevin else {}),
        "realizations": realizations,
        "t_final": t_final,
        "n_snapshots": n_snapshots,
        "trajectories": trajectories,
        "seed": seed,
        "device": "cpu",
        "arms": arms_cfg,
        "versions": {
            "negd": "synthetic",
            "torch": "n/a",
            "numpy": np.__version__,
            "python": "n/a",
            "platform": "n/a",
            "cpu": "n/a",
        },
        "kernel": False,
        "created": "2000-01-01T00:00:00",
    }
    (path / "config.json").write_text(json.dumps(config, indent=2))

    times = np.linspace(0.0, t_final, n_snapshots)
    arms_complete = []
    total_wall = 0.0
    for i, arm in enumerate(arms_cfg):
        ratio = arm["sigma"] / sigma0
        keep = n_snapshots
        if interrupted and i == 0:
            keep = max(2, n_snapshots // 2)
        if interrupted and i == n_arms - 1 and n_arms > 1:
            continue
        rows: dict[str, list] = {
            k: []
            for k in (
                *REQUIRED_ARRAYS,
                "trajectories",
                "grad_norm",
                "trace_hessian",
                "z",
                "c",
                "acceptance_predicted",
                "drift_factor",
                "wall_seconds",
            )
            + (("gd_param_var", "gd_loss_se", "gd_loss_of_mean") if langevin else ())
        }
        for s, t in enumerate(times[:keep]):
            x_gd = x_star + (x0 - x_star) * math.exp(-t)
            b = bias * ratio * (t / t_final) * direction
            v = variance * ratio * t / t_final
            x = x_gd + b + math.sqrt(v) * rng.normal(size=(realizations, n_params))
            if branches > 0 and t > t_final / 2:
                x = x + branches * (t / t_final - 0.5) * signs * branch_dir
            losses = loss(x)
            gd_params, gd_loss = x_gd, loss(x_gd)
            if langevin:
                x_l = x_gd + math.sqrt(v) * rng.normal(size=(twin_realizations, n_params))
                gd_params, losses_l = x_l.mean(axis=0), loss(x_l)
                gd_loss = losses_l.mean()
                rows["gd_param_var"].append(x_l.var(axis=0, ddof=1))
                rows["gd_loss_se"].append(losses_l.std(ddof=1) / math.sqrt(twin_realizations))
                rows["gd_loss_of_mean"].append(loss(gd_params))
            grad_norm = 2 * float(np.linalg.norm(x_gd - x_star)) / n_params
            c = arm["sigma"] * 2.0 / (2 * grad_norm)
            predicted = float(_phi_cdf(np.array(-c)))
            if s == 0:
                acc, acc_se = math.nan, math.nan
            else:  # binomial noise around the prediction, as a measured rate would have
                n_trials = realizations * (arm["ne_steps"] // (n_snapshots - 1))
                acc = float(rng.binomial(n_trials, predicted)) / n_trials
                acc_se = math.sqrt(acc * (1 - acc) / n_trials)
            total_wall += 0.01
            for key, value in (
                ("t", t),
                ("ne_step", int(round(t / (alpha * arm["lambda"])))),
                ("gd_step", int(round(t / alpha))),
                ("ne_loss_mean", losses.mean()),
                ("ne_loss_se", losses.std(ddof=1) / math.sqrt(realizations)),
                ("loss_of_mean", loss(x.mean(axis=0))),
                ("gd_loss", gd_loss),
                ("acceptance", acc),
                ("acceptance_se", acc_se),
                ("param_mean", x.mean(axis=0)),
                ("param_var", x.var(axis=0, ddof=1)),
                ("gd_params", gd_params),
                ("trajectories", x[:trajectories].astype(np.float32)),
                ("grad_norm", grad_norm),
                ("trace_hessian", 2.0),
                ("z", 1000.0 * arm["sigma"] * grad_norm if langevin else math.inf),
                ("c", c),
                ("acceptance_predicted", predicted),
                ("drift_factor", math.exp(-c * c / 2)),
                ("wall_seconds", 0.01 * (s + 1)),
            ):
                rows[key].append(value)
        arrays = {k: np.asarray(v) for k, v in rows.items()}
        for key in ("ne_step", "gd_step"):
            arrays[key] = arrays[key].astype(np.int64)
        arrays["trajectories"] = arrays["trajectories"].astype(np.float32)
        arrays["trajectory_ids"] = np.arange(trajectories, dtype=np.int64)
        _save_npz_atomic(path / "arms" / str(i) / "snapshots.npz", arrays)
        if keep == n_snapshots:
            arms_complete.append(i)
    status = {
        "state": "interrupted" if interrupted else "complete",
        "arms_complete": arms_complete,
        "wall_seconds": total_wall,
    }
    (path / "status.json").write_text(json.dumps(status, indent=2))
    return path


def make_placed_run(path: Path, rows: list[dict[str, float]], *, realizations: int = 100,
                    n_params: int = 8) -> Path:
    """A one-arm run directory whose analysis gives exactly the numbers in ``rows``, one per snapshot
    after t = 0: ``delta_ratio`` (Delta_c/param_change, may be negative), ``delta_ratio_se``,
    ``loss_gap`` ((NE - GD)/GD, signed) and ``loss_gap_se``; optional ``t`` (default evenly to 1).

    Built by hand (no sampling): x(0) = 0, x_GD(t) = sqrt(P) (so param_change = P = t), the NE mean
    x_GD + b u (u = +-1), Var = floor R with floor = max(2 |r| P, 0.01 P), b^2 = r P + floor (Delta_c = r P),
    the covariance SE column = SE P, U_GD = 1 and <U_NE> = 1 + loss_gap +- loss_gap_se. For placing
    runs on either side of the verdict's thresholds (tests/test_verdict.py)."""
    n = len(rows)
    base = make_run_dir(path, n_params=n_params, realizations=realizations, n_snapshots=n + 1, n_arms=1,
                        trajectories=4, seed=0)
    npz = base / "arms" / "0" / "snapshots.npz"
    with np.load(npz) as data:
        arrays = {k: np.array(data[k]) for k in data.files}
    u = np.where(np.arange(n_params) % 2 == 0, 1.0, -1.0)
    times = [float(r.get("t", (i + 1) / n)) for i, r in enumerate(rows)]
    arrays["t"] = np.array([0.0, *times])
    arrays["delta_corrected_se_covariance"] = np.full(n + 1, np.nan)
    for key in ("param_mean", "param_var", "gd_params"):
        arrays[key] = np.zeros((n + 1, n_params))
    arrays["ne_loss_mean"], arrays["gd_loss"] = np.ones(n + 1), np.ones(n + 1)
    arrays["loss_of_mean"], arrays["ne_loss_se"] = np.ones(n + 1), np.full(n + 1, 1e-3)
    for s, (row, t) in enumerate(zip(rows, times), start=1):
        change, ratio = t, float(row["delta_ratio"])
        floor = max(2 * abs(ratio) * change, 0.01 * change)
        arrays["gd_params"][s] = math.sqrt(change)
        arrays["param_mean"][s] = math.sqrt(change) + math.sqrt(ratio * change + floor) * u
        arrays["param_var"][s] = floor * realizations
        arrays["delta_corrected_se_covariance"][s] = float(row["delta_ratio_se"]) * change
        arrays["ne_loss_mean"][s] = 1.0 + float(row["loss_gap"])
        arrays["ne_loss_se"][s] = float(row["loss_gap_se"])
    arrays["trajectories"] = np.repeat(arrays["param_mean"][:, None, :], 4, axis=1).astype(np.float32)
    _save_npz_atomic(npz, arrays)
    return base
