"""Beyond the paper: each neuroevolution variant next to its gradient twin (``negd reproduce variants``).

The shallow set-up of Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021) at quick scale
(1-30-1 tanh MLP without output bias, sin 2 pi t on 1000 points, paper init sigma0 = 1e-2, beta = inf,
sigma = sqrt(2 pi) lambda alpha with alpha = 1e-4, lambda = 1/2). Every rule starts R realizations from
the same x(0) (seed ``seed``) and runs the same number of steps as its twin; the common time axis is
t = lambda alpha x steps (the path time of the paper's rule, sigma/sqrt(2 pi) per step). Rules
(docs/variants.md):

* ``neuroevolution``: the paper's rule; twin normalized GD with alpha = sigma/sqrt(2 pi) (the reference);
* ``population-comma``/``population-elitist``: (1,K)/(1+K) evolution strategies, K = 4; twin
  :func:`negd.population_twin` without noise (normalized GD with alpha = sigma E[.]);
* ``adaptive-mc``: aMC (Whitelam et al., MLST 3, 045026 (2022)); twin the mean-field
  :class:`negd.rules.AdaptiveMCTwin` (known to lag the ensemble: it leaves out the spread of mu);
* ``minibatch-paired``: paired minibatch NE (B = 50); twin normalized SGD on the same batches
  (:func:`negd.twins.constructors.minibatch_twin`), realization by realization, so Delta_c is that of the
  paired differences (as scripts/measure_minibatch.py).

Per snapshot: full-data loss of the rule's ensemble (mean +- SE) and of the twin, the floor-corrected
Delta_c with its covariance SE (:func:`negd.analysis.delta.delta_from_samples`), param_change =
(1/N)|x_twin - x(0)|^2 and loss evaluations per realization. Verdict:
:func:`negd.analysis.verdict.rows_verdict` over all snapshots. Drift per loss evaluation:
(U(0) - <U(t)>)/evaluations over the run, next to the twin's (U(0) - U_twin(t))/evaluations (the
theory's drift integrated along the path); and the evaluations each rule needs to reach a common loss
relative to the paper's rule, against the linear-loss theory
(:func:`negd.theory.population.drift_per_evaluation` over phi(0); 1/2 for the paired mode; none for aMC).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from negd.analysis.delta import delta_from_samples
from negd.analysis.verdict import rows_verdict, verdict_record
from negd.engine import advance
from negd.experiments.run.environment import one_thread, versions
from negd.experiments.run.store import rebuild_from_results
from negd.losses.minibatch import MinibatchLoss
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.progress import ArmProgress
from negd.rules import (
    AdaptiveMC,
    AdaptiveMCTwin,
    MinibatchNeuroevolution,
    Neuroevolution,
    NormalizedGradientDescent,
    Population,
)
from negd.runfiles import write_json
from negd.tasks import get_task
from negd.theory.population import drift_per_evaluation
from negd.twins import population_twin
from negd.twins.constructors import minibatch_twin
from negd.validation import NegdError, check_int, check_positive

__all__ = ["VariantsExperiment", "VARIANTS_SCALES", "variants_preset", "run_variants", "rebuild_report"]

PHI0 = 1.0 / math.sqrt(2 * math.pi)  # the paper rule's drift per step / sigma on a linear loss


@dataclass(frozen=True)
class VariantsExperiment:
    """Settings of ``negd reproduce variants`` (module docstring)."""

    t_final: float = 0.5
    n_snapshots: int = 21
    realizations: int = 16
    sigma0: float = 1e-2
    alpha: float = 1e-4
    lam: float = 0.5
    k: int = 4
    epsilon: float = 0.1
    batch_size: int = 50
    seed: int = 0
    scale: str = "quick"

    @property
    def sigma(self) -> float:
        return math.sqrt(2 * math.pi) * self.lam * self.alpha

    @property
    def steps(self) -> int:
        """NE steps to t_final: each moves the paper's rule by lam alpha in path time."""
        return max(1, round(self.t_final / (self.lam * self.alpha)))

    def snapshot_steps(self) -> list[int]:
        return sorted({round(i * self.steps / (self.n_snapshots - 1)) for i in range(self.n_snapshots)})


# 0.5 in t (10,000 steps) keeps the whole command near 3 minutes on one busy core: the minibatch arm
# (batch selection per step and realization) costs ~7 ms per step with its twin, the rest ~7 ms together.
VARIANTS_SCALES = {"quick": VariantsExperiment()}


def variants_preset(scale: str = "quick", *, realizations: int | None = None, seed: int = 0
                    ) -> VariantsExperiment:
    if scale not in VARIANTS_SCALES:
        raise NegdError(f"--scale: must be one of {', '.join(VARIANTS_SCALES)} for variants, got {scale!r}")
    exp = VARIANTS_SCALES[scale]
    if realizations is not None:
        exp = replace(exp, realizations=check_int("--realizations", realizations, 3))
    return replace(exp, seed=check_int("--seed", seed, 0))


def _check(exp: VariantsExperiment) -> None:
    for name in ("t_final", "sigma0", "alpha", "lam", "epsilon"):
        check_positive(name, getattr(exp, name))
    check_int("realizations", exp.realizations, 3)  # the covariance SE of Delta_c needs R >= 3
    check_int("n_snapshots", exp.n_snapshots, 2)
    check_int("k", exp.k, 1)
    check_int("batch_size", exp.batch_size, 1)
    check_int("seed", exp.seed, 0)


@dataclass(frozen=True)
class Arm:
    """One rule, its twin, the loss they see and the theory's drift per evaluation relative to NE."""

    name: str
    rule: object
    twin: object
    twin_label: str
    minibatch: bool = False
    theory_ratio: float | None = None  # drift per loss evaluation / the paper rule's, linear loss

    @property
    def evaluations_per_step(self) -> int:
        return int(getattr(self.rule, "evaluations_per_step", 1))


def arms(exp: VariantsExperiment) -> list[Arm]:
    sigma, k = exp.sigma, exp.k
    comma, elitist = Population(sigma, k=k, selection="comma"), Population(sigma, k=k, selection="elitist")
    paired = MinibatchNeuroevolution(sigma, mode="paired")
    return [
        Arm("neuroevolution", Neuroevolution(sigma), NormalizedGradientDescent(alpha=sigma * PHI0),
            "normalized GD", theory_ratio=1.0),
        Arm("population-comma", comma, population_twin(comma, noise=False),
            f"normalized GD, alpha = sigma E[M_{k}]",
            theory_ratio=drift_per_evaluation(k, "comma") / PHI0),
        Arm("population-elitist", elitist, population_twin(elitist, noise=False),
            f"normalized GD, alpha = sigma E[max(0, M_{k})]",
            theory_ratio=drift_per_evaluation(k, "elitist") / PHI0),
        Arm("adaptive-mc", AdaptiveMC(sigma, epsilon=exp.epsilon), AdaptiveMCTwin(sigma, epsilon=exp.epsilon),
            "mean-field aMC twin"),
        Arm("minibatch-paired", paired, minibatch_twin(paired), "normalized SGD, same batches",
            minibatch=True,
            theory_ratio=0.5),
    ]


def _mean_se(x: Tensor) -> tuple[float, float]:
    x = x.to(torch.float64)
    return float(x.mean()), (float(x.std(unbiased=True)) / math.sqrt(x.shape[0]) if x.shape[0] > 1 else 0.0)


def _snapshot(arm: Arm, exp: VariantsExperiment, step: int, full: MLPLoss, x0: np.ndarray, ne, tw) -> dict:
    """The numbers of one snapshot (module docstring)."""
    ne_loss, tw_loss = full(ne.params).to(torch.float64), full(tw.params).to(torch.float64)
    samples = ne.params.detach().to(torch.float64).cpu().numpy()
    twin_x = tw.params.detach().to(torch.float64).cpu().numpy()
    if arm.minibatch:  # paired realizations on the same batches: Delta_c of their differences
        stats = delta_from_samples(np.zeros(samples.shape[1]), samples - twin_x)
        gap, gap_se = _mean_se(ne_loss - tw_loss)
    else:
        stats = delta_from_samples(twin_x[0], samples)
        gap, gap_se = float(ne_loss.mean() - tw_loss.mean()), _mean_se(ne_loss)[1]
    mean, se = _mean_se(ne_loss)
    return {"step": step, "t": exp.lam * exp.alpha * step,
            "loss_evaluations": step * arm.evaluations_per_step,
            "loss_mean": mean, "loss_se": se, "twin_loss": float(tw_loss.mean()), "loss_gap": gap,
            "loss_gap_se": gap_se, "delta_corrected": float(stats.corrected),
            "delta_corrected_se": float(stats.corrected_se),
            "param_change": float(np.mean((twin_x.mean(axis=0) - x0) ** 2))}


def run_arm(arm: Arm, exp: VariantsExperiment, full: MLPLoss, minibatch: MinibatchLoss, x0: Tensor,
            progress: ArmProgress) -> dict:
    """The rule's ensemble and its twin, snapshot by snapshot; the per-rule summary."""
    loss_fn = minibatch if arm.minibatch else full
    twin_r = exp.realizations if arm.minibatch else 1
    start = time.perf_counter()
    ne = arm.rule.init(x0, loss_fn, seed=exp.seed, realizations=exp.realizations)
    tw = arm.twin.init(x0, loss_fn, seed=exp.seed, realizations=twin_r)
    rows, done, x0_np = [], 0, x0.to(torch.float64).cpu().numpy()
    steps = exp.snapshot_steps()
    progress.start_arm(arm.name, int(steps[-1]) if len(steps) else 0)
    for step in steps:
        ne = advance(arm.rule, ne, loss_fn, step - done)
        tw = advance(arm.twin, tw, loss_fn, step - done)
        progress.update(step - done)
        done = step
        rows.append(_snapshot(arm, exp, step, full, x0_np, ne, tw))
        progress.note(f"loss {rows[-1]['loss_mean']:.5f}, twin {rows[-1]['twin_loss']:.5f}")
    summary = summarize(arm, rows, exp.realizations)
    summary["wall_seconds"] = time.perf_counter() - start
    progress.close()
    return {"summary": summary, "snapshots": rows}


def _drift_per_evaluation(rows: list[dict], key: str) -> float:
    evals = rows[-1]["loss_evaluations"]
    return (rows[0][key] - rows[-1][key]) / evals if evals else math.nan


def evaluations_to_reach(rows: list[dict], level: float) -> float:
    """Loss evaluations at which the mean loss first reaches ``level`` (linear between snapshots; nan if
    never)."""
    for a, b in zip(rows, rows[1:]):
        if b["loss_mean"] <= level < a["loss_mean"]:
            w = (a["loss_mean"] - level) / (a["loss_mean"] - b["loss_mean"])
            return a["loss_evaluations"] + w * (b["loss_evaluations"] - a["loss_evaluations"])
    return math.nan


def summarize(arm: Arm, rows: list[dict], realizations: int) -> dict:
    """Final numbers, the verdict (negd.analysis.metrics) and the measured drift per loss evaluation."""
    last = rows[-1]
    run, final = rows_verdict(rows, gap_key="loss_gap", gap_se_key="loss_gap_se", twin_loss_key="twin_loss",
                              realizations=realizations)
    return {"rule": arm.name, "rule_repr": repr(arm.rule), "twin": arm.twin_label,
            "twin_repr": repr(arm.twin),
            "evaluations_per_step": arm.evaluations_per_step, "final": final,
            "loss_mean": last["loss_mean"], "loss_se": last["loss_se"], "twin_loss": last["twin_loss"],
            "loss_gap": last["loss_gap"], "loss_gap_se": last["loss_gap_se"],
            **verdict_record(run),
            "drift_per_evaluation_run": _drift_per_evaluation(rows, "loss_mean"),
            "drift_per_evaluation_twin": _drift_per_evaluation(rows, "twin_loss"),
            "theory_ratio_to_neuroevolution": arm.theory_ratio}


def _add_ratios(results: dict[str, dict]) -> float:
    """Efficiency per loss evaluation relative to the paper's rule, at the same loss.

    All twins follow the gradient-flow path at different speeds, so compare where the loss (hence the
    point on the path, and |g|) is the same: the evaluations each rule needs to reach the highest final
    mean loss of all rules. Comparing loss decrease per evaluation over the run instead would credit a
    fast rule with the steeper part of the shallow task's loss curve (it starts on a plateau).
    """
    target = max(res["snapshots"][-1]["loss_mean"] for res in results.values())
    ref = evaluations_to_reach(results["neuroevolution"]["snapshots"], target)
    for res in results.values():
        s = res["summary"]
        s["evaluations_to_target"] = evaluations_to_reach(res["snapshots"], target)
        s["measured_ratio_to_neuroevolution"] = ref / s["evaluations_to_target"]
    return target


def run_variants(exp: VariantsExperiment, out: Path | None = None, *, progress: bool = True) -> Path:
    """Run every arm into ``out`` (default runs/variants-<scale>-seed<seed>-<time>); returns the directory."""
    import datetime as _dt

    from negd.analysis.variants_report import write_report

    _check(exp)
    run_dir = Path(out) if out is not None else Path("runs") / (
        f"variants-{exp.scale}-seed{exp.seed}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise NegdError(f"--out: {str(run_dir)!r} exists and is not empty; choose another directory")
    task = get_task("sin2pi")
    spec = MLPSpec(1, 30, output_bias=False)
    full = MLPLoss(spec, task.inputs, task.targets, backend="auto")
    minibatch = MinibatchLoss.for_mlp(spec, task.inputs, task.targets, exp.batch_size)
    # float64 parameters: sigma = 1.25e-4 moves are near float32 rounding of O(1) weights (runner: dtype auto)
    x0 = paper_init(spec.n_params, exp.sigma0, seed=exp.seed, dtype=torch.float64)
    config = {"run_kind": "variants"} | asdict(exp) | {
                            "sigma": exp.sigma, "steps": exp.steps, "n_params": spec.n_params,
                            "spec": asdict(spec), "task": "sin2pi", "beta": "inf", "seeds": {
                                "x0": exp.seed, "rules": exp.seed, "twins": exp.seed, "batches": exp.seed},
                            "versions": versions()}
    run_dir.mkdir(parents=True, exist_ok=True)  # only once everything is validated and built
    write_json(run_dir / "config.json", config)
    bars = ArmProgress(progress, unit="step")  # one bar per arm (negd.progress)
    start = time.perf_counter()
    with one_thread():  # one thread: reproducible reductions, and faster on shared cores (see runner)
        results = {arm.name: run_arm(arm, exp, full, minibatch, x0, bars) for arm in arms(exp)}
    target = _add_ratios(results)
    summary = {"experiment": "variants", "scale": exp.scale, "seed": exp.seed, "config": config,
               "target_loss": target,
               "rules": {name: res["summary"] for name, res in results.items()},
               "total_wall_seconds": time.perf_counter() - start}
    write_json(run_dir / "snapshots.json", {name: res["snapshots"] for name, res in results.items()},
               seal=True)
    write_json(run_dir / "summary.json", summary, seal=True)
    write_report(run_dir, exp, results, summary)
    return run_dir


def rebuild_report(run_dir: Path) -> Path:
    """report.md and figures of a finished variants run, again from its config.json, snapshots.json and
    summary.json (``negd report``; nothing is recomputed or replaced by less)."""
    from negd.analysis.variants_report import write_report

    def write(exp: VariantsExperiment, snapshots: dict, summary: dict) -> Path:
        results = {name: {"summary": rule, "snapshots": snapshots[name]}
                   for name, rule in summary["rules"].items()}
        return write_report(run_dir, exp, results, summary)

    return rebuild_from_results(run_dir, "variants", VariantsExperiment, write)
