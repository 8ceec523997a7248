"""``negd reproduce control``: CartPole-v1 and Pendulum-v1 trained without a gradient (issue 15).

For each environment (:mod:`negd.envs`, gymnasium 1.x dynamics in batched torch) and a tanh MLP policy
(greedy over two outputs for CartPole, the torque for Pendulum), starting every realization from zero
parameters (seed ``seed`` for everything: episodes, mutations, twin):

* ``neuroevolution``: :class:`negd.rules.MinibatchNeuroevolution` in the paired mode: parent and
  proposal play the same E episodes of the step (``ControlLoss.at``: common random numbers);
* ``population``: :class:`negd.rules.Population`, (1+K) elitist, on the E fixed episodes
  (``ControlLoss.__call__``: a deterministic objective; the rule does not re-score its parent);
* ``adaptive-mc``: :class:`negd.rules.AdaptiveMC` (Whitelam et al., MLST 3, 045026 (2022)) on the
  fixed episodes;
* ``mean-field twin``: :class:`negd.rules.mean_field.MeanFieldTwin` of the neuroevolution arm (same
  sigma, the same step episodes), x <- x + E[dx | x] from M antithetic proposals: the deterministic
  drift that the ensemble of neuroevolution follows, with no gradient anywhere.

At each snapshot every arm's policies play ``eval_episodes`` held-out episodes (never a training
episode: :data:`negd.envs.HELDOUT_STEP`), the ensemble's mean return +- SE over realizations (the
twin: +- SE over episodes) is recorded against environment steps played in training and process CPU
seconds. At the end: ``heldout_episodes`` (100) held-out episodes per realization, the correspondence
of neuroevolution and its mean-field twin (final held-out returns, gap in combined SE), the tie
fraction of the run (accepted ties, :mod:`negd.ties`) and a tie scan over sigma at the final policies.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from negd.diagnostics.ties import tie_scan
from negd.engine import advance_tallied
from negd.envs import ControlLoss, heldout_returns
from negd.experiments.control_store import RUN_KIND, ArmFiles, check_resumable, settings_record
from negd.experiments.run.environment import one_thread, versions
from negd.experiments.run.lock import remove_unstarted, run_dir_lock
from negd.losses.models import MLPSpec, paper_init
from negd.rules import AdaptiveMC, MinibatchNeuroevolution, Population
from negd.runfiles import read_json_object, write_json
from negd.twins.mean_field import MeanFieldTwin
from negd.validation import NegdError, check_int, check_nonnegative

__all__ = ["EnvSettings", "ControlExperiment", "CONTROL_SCALES", "control_preset", "run_control",
           "default_run_dir", "rebuild_report"]

TWIN = "mean-field twin"
AGREE_SE = 4.0  # |gap| beyond 4 combined SE: the twin departs from the ensemble
RESOLVED_FRACTION = 0.1  # "agrees" only when 4 SE is at most 10% of neuroevolution's progress


@dataclass(frozen=True)
class EnvSettings:
    env: str
    width: int
    sigma: float
    episodes: int  # E per loss evaluation
    steps: int
    realizations: int
    k: int = 4  # population children
    n_reset: int = 50  # aMC: rejections before sigma shrinks
    twin_proposals: int = 16  # M of the mean-field twin
    init: float = 0.0  # start: zeros, or one x ~ N(0, init^2) shared by all realizations (paper_init, seed)

    @property
    def spec(self) -> MLPSpec:
        inputs = 4 if self.env == "CartPole-v1" else 3
        outputs = 2 if self.env == "CartPole-v1" else 1
        return MLPSpec(depth=1, width=self.width, in_features=inputs, out_features=outputs)


@dataclass(frozen=True)
class ControlExperiment:
    scale: str = "quick"
    seed: int = 0
    envs: tuple[EnvSettings, ...] = field(default_factory=tuple)
    n_snapshots: int = 11
    eval_episodes: int = 20
    heldout_episodes: int = 100


CONTROL_SCALES = {
    # quick: minutes on a 2-core machine (the fused rollout kernel). Pendulum: width 8 from one N(0, 0.5^2)
    # start with sigma = 1 on every parameter, a near random search with greedy paired selection on E = 32
    # episodes (acceptance ~1%): sigma 0.05-0.4 stays in the -750 basin of a policy that balances but does
    # not swing up, from zeros as from a random start; E = 16 accepts moves that only the step's episodes
    # favour (docs/results/control-pendulum-recipe.md, benchmarks/pendulum_recipe.py).
    "quick": ControlExperiment("quick", envs=(
        EnvSettings("CartPole-v1", width=8, sigma=0.2, episodes=5, steps=200, realizations=8),
        EnvSettings("Pendulum-v1", width=8, sigma=1.0, episodes=32, steps=6000, realizations=8, init=0.5))),
    "full": ControlExperiment("full", envs=(
        EnvSettings("CartPole-v1", width=8, sigma=0.2, episodes=10, steps=500, realizations=16),
        EnvSettings("Pendulum-v1", width=8, sigma=1.0, episodes=32, steps=12000, realizations=16, k=8,
                    twin_proposals=32, init=0.5))),
}


def control_preset(scale: str = "quick", *, realizations: int | None = None, seed: int = 0,
                   envs: list[str] | None = None) -> ControlExperiment:
    if scale not in CONTROL_SCALES:
        raise NegdError(f"--scale: must be one of {', '.join(CONTROL_SCALES)} for control, got {scale!r}")
    exp = replace(CONTROL_SCALES[scale], seed=check_int("--seed", seed, 0))
    chosen = exp.envs
    if envs is not None:
        known = [s.env for s in exp.envs]
        bad = [e for e in envs if e not in known]
        if bad:
            raise NegdError(f"--env: must be among {', '.join(known)}, got {', '.join(bad)}")
        chosen = tuple(s for s in exp.envs if s.env in envs)
    if realizations is not None:
        r = check_int("--realizations", realizations, 2)
        chosen = tuple(replace(s, realizations=r) for s in chosen)
    return replace(exp, envs=chosen)


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    x = x.to(torch.float64).reshape(-1)
    se = float(x.std()) / math.sqrt(x.numel()) if x.numel() > 1 else math.nan
    return float(x.mean()), se


def _arms(s: EnvSettings) -> dict[str, tuple[object, int, bool]]:
    """name -> (rule, realizations, paired: plays the step's episodes)."""
    return {
        "neuroevolution": (MinibatchNeuroevolution(s.sigma, mode="paired"), s.realizations, True),
        "population": (Population(s.sigma, k=s.k, selection="elitist"), s.realizations, False),
        "adaptive-mc": (AdaptiveMC(s.sigma, n_reset=s.n_reset), s.realizations, False),
        TWIN: (MeanFieldTwin(s.sigma, proposals=s.twin_proposals), 1, True),
    }


def _evaluate(loss: ControlLoss, params: torch.Tensor, episodes: int, seed: int) -> dict:
    """Held-out returns: mean +- SE over realizations of their mean (one realization: over episodes)."""
    returns = heldout_returns(loss, params, episodes, seed=seed)
    per_realization = returns.mean(dim=1)
    mean, se = _mean_se(per_realization if params.shape[0] > 1 else returns[0])
    return {"return_mean": mean, "return_se": se, "return_best": float(per_realization.max()),
            "per_realization": per_realization.tolist()}


def correspondence(ne: dict, twin: dict, initial: float) -> dict:
    """Final held-out returns of neuroevolution's ensemble and of its twin: the gap in combined SE.

    "departs" beyond AGREE_SE combined SE; "agrees" within them when that band is at most
    RESOLVED_FRACTION of neuroevolution's progress |final - initial| (the error bars resolve a gap that
    matters); "unresolved" otherwise.
    """
    gap = twin["return_mean"] - ne["return_mean"]
    se = math.hypot(ne["return_se"], twin["return_se"])
    progress = abs(ne["return_mean"] - initial)
    if abs(gap) > AGREE_SE * se:
        label = "departs"
        why = f"beyond {AGREE_SE:g} SE"
    elif AGREE_SE * se <= RESOLVED_FRACTION * progress:
        label = "agrees"
        why = (f"within {AGREE_SE:g} SE, a band under {100 * RESOLVED_FRACTION:g}% of the progress "
               f"{progress:.1f}")
    else:
        label = "unresolved"
        why = (f"within {AGREE_SE:g} SE, but that band ({AGREE_SE * se:.1f}) exceeds "
               f"{100 * RESOLVED_FRACTION:g}% of the progress {progress:.1f}")
    sentence = (f"mean-field twin {twin['return_mean']:.1f} vs neuroevolution ensemble "
                f"{ne['return_mean']:.1f}: gap {gap:+.1f} = {gap / se:+.1f} combined SE: {label} ({why})")
    return {"gap": gap, "gap_se": se, "progress": progress, "label": label,
            "agrees": label == "agrees", "sentence": sentence}


def _x0(s: EnvSettings, seed: int) -> torch.Tensor:
    """The start shared by every realization and the twin: zeros, or x_i ~ N(0, init^2) (seed's
    STREAM_INIT, negd.losses.models.paper_init): a random start breaks the symmetry of the hidden units,
    whose outputs are second order in sigma at x = 0."""
    n = s.spec.n_params
    if s.init == 0:
        return torch.zeros(n, dtype=torch.float64)
    return paper_init(n, s.init, seed=seed, dtype=torch.float64)


def _run_arm(name: str, rule, r: int, paired: bool, s: EnvSettings, exp: ControlExperiment, files: ArmFiles,
             evaluation: ControlLoss, snaps: list[int]) -> dict:
    """One arm from its start or from its checkpoint, snapshot by snapshot (each one saved)."""
    spec = s.spec
    loss = ControlLoss(s.env, spec, episodes=s.episodes, seed=exp.seed)
    saved = files.load_checkpoint()
    wall = time.perf_counter()
    if saved is None:
        cpu = time.process_time()
        state = rule.init(_x0(s, exp.seed), loss, seed=exp.seed, realizations=r)
        cpu_used, rows, done, wall_before = time.process_time() - cpu, [], 0, 0.0
        accepted = torch.zeros(r, dtype=torch.int64)
        ties = torch.zeros(r, dtype=torch.int64)
    else:  # continue from the last snapshot: every random number is counter based, so nothing differs
        state, rows, done = saved["state"], saved["rows"], saved["done"]
        accepted, ties, cpu_used = saved["accepted"], saved["ties"], saved["cpu_seconds"]
        loss.env_steps, wall_before = saved["env_steps"], saved["wall_seconds"]
    for step in snaps[len(rows):]:
        cpu = time.process_time()
        state, tally = advance_tallied(rule, state, loss, step - done)
        cpu_used += time.process_time() - cpu
        accepted, ties, done = accepted + tally.accepted, ties + tally.ties, step
        ev = _evaluate(evaluation, state.params, exp.eval_episodes, exp.seed)
        rows.append({"step": step, "env_steps": loss.env_steps, "cpu_seconds": cpu_used,
                     "return_mean": ev["return_mean"], "return_se": ev["return_se"],
                     "return_best": ev["return_best"]})
        if step != snaps[-1]:
            files.save_checkpoint(state, rows, done, accepted, ties, cpu_used, loss.env_steps,
                                  wall_before + time.perf_counter() - wall)
    final = _evaluate(evaluation, state.params, exp.heldout_episodes, exp.seed)
    summary = {"rule": repr(rule), "realizations": r, "paired_episodes": paired,
               "evaluations_per_step": int(getattr(rule, "evaluations_per_step", 1)),
               "heldout": final, "env_steps": loss.env_steps, "cpu_seconds": cpu_used,
               "acceptance": float(accepted.sum()) / max(1, s.steps * r) if name != TWIN else math.nan,
               "tie_fraction": float(ties.sum()) / max(1, s.steps * r) if name != TWIN else math.nan}
    if name == "neuroevolution":
        scan = tie_scan(evaluation, state.params, [s.sigma / 100, s.sigma / 10, s.sigma, 3 * s.sigma],
                        probes=32, seed=exp.seed, at_sigma=s.sigma)
        summary["tie_scan"] = scan.to_dict()
    summary["wall_seconds"] = wall_before + time.perf_counter() - wall
    return {"summary": summary, "snapshots": rows}


def run_env(s: EnvSettings, exp: ControlExperiment, log, run_dir: Path) -> dict:
    """Every arm of one environment; a finished arm's file is read, never recomputed."""
    spec = s.spec
    evaluation = ControlLoss(s.env, spec, episodes=s.episodes, seed=exp.seed)  # never counted as training
    snaps = sorted({round(i * s.steps / (exp.n_snapshots - 1)) for i in range(exp.n_snapshots)})
    settings = {"env": asdict(s), "seed": exp.seed, "n_snapshots": exp.n_snapshots,
                "eval_episodes": exp.eval_episodes, "heldout_episodes": exp.heldout_episodes}
    out: dict[str, dict] = {}
    for name, (rule, r, paired) in _arms(s).items():
        files = ArmFiles(run_dir, s.env, name, settings)
        result = files.load_result()
        if result is None:
            result = _run_arm(name, rule, r, paired, s, exp, files, evaluation, snaps)
            files.save_result(result)
        out[name] = result
        a = result["summary"]
        final = a["heldout"]
        log(f"{s.env} {name}: held-out return {final['return_mean']:.1f} +- {final['return_se']:.1f} "
            f"(best {final['return_best']:.1f}), {a['env_steps']:,} env steps, {a['cpu_seconds']:.0f} CPU s")
    initial = out["neuroevolution"]["snapshots"][0]["return_mean"]
    corr = correspondence(out["neuroevolution"]["summary"]["heldout"], out[TWIN]["summary"]["heldout"],
                          initial)
    return {"env": s.env, "settings": asdict(s), "n_params": spec.n_params, "arms": out,
            "correspondence": corr}


def default_run_dir(exp: ControlExperiment) -> Path:
    return Path("runs") / f"control-{exp.scale}-seed{exp.seed}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


def run_control(exp: ControlExperiment, out: Path | None = None, *, progress: bool = True,
                resume: bool = False) -> Path:
    """Run every environment and arm into ``out``; returns the run directory.

    ``resume``: continue the run in ``out`` (started with the same settings): finished arms are read
    from their files, an unfinished one continues from its last snapshot (negd.experiments.control_store).
    """
    from negd.experiments.control_report import write_report

    if not exp.envs:
        raise NegdError("envs: the experiment has no environment to run")
    check_int("n_snapshots", exp.n_snapshots, 2)
    for s in exp.envs:
        check_nonnegative("init", s.init)
    if resume:
        if out is None:
            raise NegdError("--resume: give the run directory to continue")
        run_dir = Path(out)
        check_resumable(run_dir, exp)
    else:
        run_dir = Path(out) if out is not None else default_run_dir(exp)
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise NegdError(f"--out: {str(run_dir)!r} exists and is not empty; choose another directory "
                            "(or continue a control run there with --resume)")
    try:
        with run_dir_lock(run_dir):  # one writer at a time
            return _run_locked(exp, run_dir, progress, resume, write_report)
    finally:
        remove_unstarted(run_dir)  # a start that failed before config.json leaves no empty directory


def _run_locked(exp: ControlExperiment, run_dir: Path, progress: bool, resume: bool, write_report) -> Path:
    if resume:
        config = read_json_object(run_dir / "config.json")
    else:
        config = {"run_kind": RUN_KIND} | settings_record(exp) | {
            "seeds": {"episodes": exp.seed, "rules": exp.seed, "twin": exp.seed, "init": exp.seed},
            "starts": {s.env: ("zeros" if s.init == 0 else f"shared N(0, {s.init:g}^2), paper_init(seed)")
                     for s in exp.envs},
            "versions": versions()}
        write_json(run_dir / "config.json", config)
    log = (lambda text: print(f"negd control: {text}", flush=True)) if progress else (lambda text: None)
    results = {}
    with one_thread():  # tiny tensors: one thread is faster on shared cores and keeps reductions fixed
        for s in exp.envs:
            results[s.env] = run_env(s, exp, log, run_dir)
            if len(results) < len(exp.envs):  # what is done so far, readable while the rest runs
                partial = {"experiment": "control", "scale": exp.scale, "seed": exp.seed, "config": config,
                           "envs": results, "complete": False}
                write_json(run_dir / "summary.json", partial, seal=True)
    summary = {"experiment": "control", "scale": exp.scale, "seed": exp.seed, "config": config,
               "envs": results, "complete": True,
               "total_wall_seconds": sum(arm["summary"]["wall_seconds"] for env in results.values()
                                         for arm in env["arms"].values())}
    write_json(run_dir / "summary.json", summary, seal=True)
    write_report(run_dir, summary)
    return run_dir


def rebuild_report(run_dir: Path) -> Path:
    """report.md and figures of a finished control run, again from its summary.json (``negd report``;
    nothing is recomputed; an unfinished run is named, its report would have less than a resume gives)."""
    from negd.experiments.control_report import write_report

    run_dir = Path(run_dir)
    summary = read_json_object(run_dir / "summary.json", sealed=True)
    if not summary.get("complete"):
        raise NegdError(f"report: {str(run_dir)!r} is an unfinished control run; continue it with "
                        f"negd reproduce control --resume {run_dir}")
    return write_report(run_dir, summary)
