"""Per-parameter view of a run: Delta over the parameters that move most, and a two-branch test.

The all-parameter Delta (negd.analysis.delta) averages over N parameters, most of which barely move;
a gap in the few that carry the dynamics is diluted by the rest. Here, at the last snapshot:

* **Top-k Delta.** Delta_c restricted to the k parameters with the largest GD displacement
  |x_GD,i(t) - x_i(0)| over the same restriction of param_change (per-parameter SE: the stored
  covariance SE covers all N parameters only, so this SE treats the k parameters as independent).
* **Largest relative mean gap.** max over those k of |<x_i> - x_GD,i| / |x_GD,i(t) - x_i(0)|, with
  its SE sqrt(Var_i/R (+ Var_L,i/R_L)) / |x_GD,i(t) - x_i(0)|.
* **Branches.** The stored trajectories (T realizations, final snapshot, top-k parameters) are
  projected on their first principal component and split in two by 1-D 2-means (the split that
  minimizes the within-cluster sum of squares). The statistic B = between-SS / total-SS is compared
  with its distribution for T draws of a Gaussian of the sample's own mean and covariance
  (parametric bootstrap, BOOTSTRAPS draws, fixed seed): a p-value below BRANCH_P flags the ensemble
  as split into branches (both branches need at least 2 members). One Gaussian cloud has B ~ 2/pi;
  two separated clouds push B towards 1.
"""

from __future__ import annotations

import math

import numpy as np

from negd.analysis.delta import delta_stats
from negd.analysis.rundir import ENSEMBLE_TWINS, ArmData

__all__ = ["TOP_K", "BRANCH_P", "BOOTSTRAPS", "top_moving", "split_statistic", "branch_test",
           "parameter_view"]

TOP_K = 5
BRANCH_P = 0.01
BOOTSTRAPS = 2000


def top_moving(gd_params: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k parameters with the largest |x_GD(t_last) - x(0)|, largest first."""
    move = np.abs(gd_params[-1] - gd_params[0])
    return np.argsort(-move, kind="stable")[: min(k, move.size)]


def _two_means_1d(x: np.ndarray) -> tuple[float, int]:
    """B = between-SS/total-SS of the best split of sorted 1-D data, and the smaller branch's size."""
    x = np.sort(x)
    n = x.size
    total = float(np.sum((x - x.mean()) ** 2))
    if n < 4 or total <= 0:
        return math.nan, 0
    best, best_size = -1.0, 0
    for cut in range(2, n - 1):  # both branches need >= 2 members
        left, right = x[:cut], x[cut:]
        between = cut * (left.mean() - x.mean()) ** 2 + (n - cut) * (right.mean() - x.mean()) ** 2
        if between > best:
            best, best_size = float(between), min(cut, n - cut)
    return best / total, best_size


def split_statistic(points: np.ndarray) -> tuple[float, int]:
    """B of the points [T, k] projected on their first principal component (module docstring)."""
    centred = points - points.mean(axis=0)
    if not np.isfinite(centred).all() or np.allclose(centred, 0):
        return math.nan, 0
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return _two_means_1d(centred @ vt[0])


def branch_test(points: np.ndarray, *, seed: int = 0, bootstraps: int = BOOTSTRAPS) -> dict:
    """Two-cluster test of points [T, k]: B, its bootstrap p-value under one Gaussian, and the flag."""
    points = np.asarray(points, dtype=np.float64)
    b, smaller = split_statistic(points)
    if not math.isfinite(b):
        return {"statistic": math.nan, "p_value": math.nan, "bimodal": False, "smaller_branch": 0,
                "trajectories": int(points.shape[0])}
    rng = np.random.default_rng(seed)
    t = points.shape[0]
    centred = points - points.mean(axis=0)
    # Gaussian draws with the sample covariance: x = mean + centred^T w / sqrt(T - 1), w ~ N(0, I_T)
    null = np.empty(bootstraps)
    for i in range(bootstraps):
        draw = rng.standard_normal((t, t)) @ centred / math.sqrt(t - 1)
        null[i] = split_statistic(draw)[0]
    p = float((1 + np.sum(null >= b)) / (1 + bootstraps))
    return {"statistic": b, "p_value": p, "bimodal": bool(p < BRANCH_P and smaller >= 2),
            "smaller_branch": smaller, "trajectories": t}


def parameter_view(arm: ArmData, *, k: int = TOP_K, seed: int = 0) -> dict:
    """Top-k Delta, the largest relative mean gap and the branch test at the last snapshot."""
    a = arm.arrays
    idx = top_moving(a["gd_params"], k)
    twin = arm.twin in ENSEMBLE_TWINS
    last = slice(-1, None)
    gd, mean, var = a["gd_params"][last][:, idx], a["param_mean"][last][:, idx], a["param_var"][last][:, idx]
    kwargs = {"twin_var": a["gd_param_var"][last][:, idx], "twin_realizations": arm.twin_realizations} \
        if twin else {}
    stats = delta_stats(gd, mean, var, arm.realizations, **kwargs)
    move = a["gd_params"][-1, idx] - a["gd_params"][0, idx]
    change = float(np.mean(move**2))
    gap_se = var[0] / arm.realizations + (kwargs["twin_var"][0] / arm.twin_realizations if twin else 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(mean[0] - gd[0]) / np.abs(move)
        rel_se = np.sqrt(gap_se) / np.abs(move)
    worst = int(np.nanargmax(rel)) if np.isfinite(rel).any() else 0
    out = {
        "k": int(idx.size),
        "parameters": [int(i) for i in idx],
        "delta_corrected": float(np.asarray(stats.corrected)[0]),
        "delta_corrected_se": float(np.asarray(stats.corrected_se)[0]),
        "param_change": change,
        "delta_ratio": float(np.asarray(stats.corrected)[0]) / change if change > 0 else math.nan,
        "delta_ratio_se": float(np.asarray(stats.corrected_se)[0]) / change if change > 0 else math.nan,
        "largest_relative_gap": float(rel[worst]),
        "largest_relative_gap_se": float(rel_se[worst]),
        "largest_relative_gap_parameter": int(idx[worst]),
    }
    traj = a.get("trajectories")
    if traj is not None and traj.ndim == 3 and traj.shape[1] >= 4:
        out["branches"] = branch_test(np.asarray(traj[-1][:, idx], dtype=np.float64), seed=seed)
    else:
        out["branches"] = {"statistic": math.nan, "p_value": math.nan, "bimodal": False, "smaller_branch": 0,
                           "trajectories": 0 if traj is None else int(traj.shape[1])}
    return out
