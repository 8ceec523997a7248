"""One snapshot row of a run: the ensemble's moments, losses and acceptance, the twin's, the SE of
Delta from every realization, and the regime check at the twin's parameters; and the rows stacked into
the arrays of ``snapshots.npz`` (the run-directory contract of docs/experiments.md)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from negd.analysis.delta import delta_from_ensembles, delta_from_samples
from negd.engine import Tally
from negd.experiments.config.schema import Arm
from negd.experiments.run.problem import Problem
from negd.state import State

__all__ = ["REGIME_PROBES", "SCALAR_KEYS", "REGIME_KEYS", "TWIN_SCALAR_KEYS", "snapshot_row", "stack_rows"]

# Hutchinson probes of the regime check at each snapshot: a few Hessian-vector products of one
# network, small next to the R x dn loss evaluations of an interval.
REGIME_PROBES = 4

SCALAR_KEYS = ("t", "ne_loss_mean", "ne_loss_se", "loss_of_mean", "gd_loss", "acceptance", "acceptance_se",
               "grad_norm", "trace_hessian", "z", "c", "acceptance_predicted", "drift_factor", "wall_seconds",
               "c_se", "acceptance_predicted_se", "drift_factor_se", "delta_corrected_se_covariance",
               "tie_fraction", "loss_error", "decision_risk", "quantization")
REGIME_KEYS = ("grad_norm", "trace_hessian", "z", "c", "c_se", "acceptance_predicted",
               "acceptance_predicted_se", "drift_factor", "drift_factor_se", "loss_error", "decision_risk",
               "quantization")
# Extra arrays of a Langevin twin (run-directory contract, docs/experiments.md).
TWIN_SCALAR_KEYS = ("gd_loss_se", "gd_loss_of_mean", "twin_grad_norm")


def regime_row(problem: Problem, gd_params: Tensor, arm: Arm, row: int) -> dict[str, float]:
    """negd.diagnostics.regime.regime_check at the twin's parameters; NaN when that module is unavailable."""
    try:
        from negd.diagnostics.regime import regime_check
    except ImportError:
        return dict.fromkeys(REGIME_KEYS, math.nan)
    check = regime_check(problem.loss_fn, gd_params, arm.sigma, problem.config.beta,
                         n_probes=REGIME_PROBES, seed=problem.config.seed + row,
                         ties=False)  # the run counts its own ties (the tally's tie_fraction)
    return {k: float(getattr(check, k)) for k in REGIME_KEYS}


def snapshot_row(problem: Problem, arm: Arm, row: int, ne: State, gd: State, tally: Tally | None,
                  dn: int, n_traj: int) -> dict:
    params = ne.params.to(torch.float64)
    r = params.shape[0]
    loss = ne.loss.to(torch.float64)
    mean = params.mean(dim=0)
    # Unbiased variances; undefined (NaN) for a single realization.
    var = params.var(dim=0, unbiased=True) if r > 1 else torch.full_like(mean, math.nan)
    loss_se = float(loss.std(unbiased=True)) / math.sqrt(r) if r > 1 else math.nan
    with torch.no_grad():
        loss_of_mean = float(problem.loss_fn(mean.to(ne.params.dtype)[None])[0])
    if tally is None:
        acc, acc_se, ties = math.nan, math.nan, math.nan
    else:
        rate = tally.accepted.to(torch.float64) / dn
        acc = float(rate.mean())
        acc_se = float(rate.std(unbiased=True)) / math.sqrt(r) if r > 1 else math.nan
        # proposals whose loss equalled the current one exactly: moves the loss did not resolve
        ties = float(tally.ties.sum()) / (r * dn)
    gd_params = gd.params[0]
    out = {"t": problem.config.alpha * arm.gd_step_of(ne.step), "ne_step": ne.step, "gd_step": gd.step,
           "ne_loss_mean": float(loss.mean()), "ne_loss_se": loss_se, "loss_of_mean": loss_of_mean,
           "gd_loss": float(gd.loss[0]), "acceptance": acc, "acceptance_se": acc_se, "tie_fraction": ties,
           "param_mean": mean.cpu().numpy(), "param_var": var.cpu().numpy(),
           "gd_params": gd_params.to(torch.float64).cpu().numpy(),
           "trajectories": ne.params[:n_traj].to(torch.float32).cpu().numpy()}
    if problem.ensemble_twin:
        out.update(twin_stats(problem, gd))
    out["delta_corrected_se_covariance"] = delta_se(ne, gd, problem.ensemble_twin)
    # The regime is checked on one twin network (realization 0 of a Langevin twin, a typical
    # member: z = beta sigma |g| concerns each realization's gradient, not that of the mean network).
    out.update(regime_row(problem, gd_params, arm, row))
    return out


def delta_se(ne: State, gd: State, ensemble_twin: bool) -> float:
    """SE of the corrected Delta from every realization (their full covariance, negd.analysis.delta (5)):
    only the run has the realizations, the snapshots keep per-parameter means and variances. NaN
    (the report then uses the per-parameter SE) when an ensemble has fewer than the 3 it needs."""
    if ne.params.shape[0] < 3 or (ensemble_twin and gd.params.shape[0] < 3):
        return math.nan
    samples = ne.params.detach().to(torch.float64).cpu().numpy()
    if ensemble_twin:
        stats = delta_from_ensembles(gd.params.detach().to(torch.float64).cpu().numpy(), samples)
    else:
        stats = delta_from_samples(gd.params[0].detach().to(torch.float64).cpu().numpy(), samples)
    return float(stats.corrected_se)


def twin_stats(problem: Problem, gd: State) -> dict:
    """Mean [N], unbiased variance [N], mean loss +- SE, loss of the mean of a Langevin twin ensemble."""
    params = gd.params.to(torch.float64)
    r = params.shape[0]
    loss = gd.loss.to(torch.float64)
    mean = params.mean(dim=0)
    with torch.no_grad():
        loss_of_mean = float(problem.loss_fn(mean.to(gd.params.dtype)[None])[0])
    grad = gd.extras.get("grad")
    grad_norm = math.nan if grad is None else float(torch.linalg.vector_norm(
        grad.to(torch.float64), dim=1).mean())
    return {"gd_params": mean.cpu().numpy(), "gd_param_var": params.var(dim=0, unbiased=True).cpu().numpy(),
            "gd_loss": float(loss.mean()), "gd_loss_se": float(loss.std(unbiased=True)) / math.sqrt(r),
            "gd_loss_of_mean": loss_of_mean, "twin_grad_norm": grad_norm}


def stack_rows(rows: list[dict], n_traj: int, n_params: int) -> dict[str, np.ndarray]:
    ensemble_twin = "gd_param_var" in rows[0]
    scalars = SCALAR_KEYS + (TWIN_SCALAR_KEYS if ensemble_twin else ())
    # .get: rows resumed from a run directory written before a column existed hold NaN there
    arrays = {k: np.asarray([row.get(k, math.nan) for row in rows], dtype=np.float64) for k in scalars}
    for k in ("ne_step", "gd_step"):
        arrays[k] = np.asarray([row[k] for row in rows], dtype=np.int64)
    for k in ("param_mean", "param_var", "gd_params") + (("gd_param_var",) if ensemble_twin else ()):
        arrays[k] = np.stack([row[k] for row in rows]).astype(np.float64)
    arrays["trajectories"] = np.stack([row["trajectories"] for row in rows]).astype(np.float32).reshape(
        len(rows), n_traj, n_params)
    arrays["trajectory_ids"] = np.arange(n_traj, dtype=np.int64)
    return arrays
