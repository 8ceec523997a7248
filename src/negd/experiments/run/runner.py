"""Run an experiment into a run directory: NE ensemble + gradient twin, snapshot by snapshot.

Whitelam et al. 2021 set-up: R neuroevolution realizations start from one shared vector x(0);
the gradient twin (normalized GD at beta = inf, plain GD at finite beta, learning rate alpha)
starts from the same x(0). Between two snapshots NE advances dn steps and GD lambda * dn steps,
so both are compared at the same t = alpha * (GD steps). With ``twin = langevin`` (finite beta)
the twin is an ensemble of R_L Langevin runs with noise sigma/sqrt(lambda) per GD step
(negd.experiments.run.twin), with ``twin = matched`` one of R_L moment-matched Langevin runs
(negd.rules.MomentMatchedLangevin, time step 1/lambda NE steps); the snapshots then store the
ensemble's mean, variance and mean loss.

Every snapshot appends its row to ``arms/<i>/snapshots.log`` and rewrites ``arms/<i>/checkpoint.pt``
atomically; a complete arm's rows become ``arms/<i>/snapshots.npz`` (negd.experiments.run.store).
The random numbers of NE are a pure function of (seed, realization, step) (:mod:`negd.rng`), so
restoring the saved states and snapshotting at the same steps makes a resumed run identical,
bit for bit, to an uninterrupted one. Ctrl-C stops at once; the run directory keeps every
snapshot completed before it. A sharded run also checkpoints each shard's progress inside an
interval (``arms/<i>/shards/``, negd.experiments.shards.task), so a killed worker, a failed shard
or an interrupted run loses at most about ``shard_checkpoint_seconds`` (30 s) of each shard's work.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from negd.callbacks import Callback, Event, as_callbacks, emit, scalar_metrics
from negd.engine import Tally, advance_counted, fused_step_fn
from negd.experiments.config.schema import Arm, ExperimentConfig
from negd.experiments.run.environment import one_thread, versions
from negd.experiments.run.lock import LOCK_NAME, remove_unstarted, run_dir_lock
from negd.experiments.run.memory import check_memory
from negd.experiments.run.problem import Problem
from negd.experiments.run.provenance import (
    check_compute_path,
    compute_path,
    load_run_config,
    recorded_shards,
    settings_of,
    settings_record,
)
from negd.experiments.run.restore import ArmShape, Restored, restore_arm
from negd.experiments.run.snapshot import snapshot_row, stack_rows
from negd.experiments.run.store import (
    SNAPSHOT_LOG,
    SNAPSHOTS,
    append_snapshot,
    arm_dir,
    consolidate,
    rewrite_log,
    save_checkpoint,
    start_log,
    write_status,
)
from negd.experiments.shards.files import clear_shard_files, shard_folder
from negd.experiments.shards.inprocess import ShardExecutor, advance_sharded, check_shards
from negd.experiments.shards.task import (
    DEFAULT_CHECKPOINT_SECONDS,
    ShardJob,
    advance_paced,
    check_checkpoint_seconds,
    zero_tally,
)
from negd.losses.mlp import MLPLoss
from negd.progress import ArmProgress
from negd.rules import (
    Neuroevolution,
    UpdateRule,
)
from negd.runfiles import MAX_QUOTE, CorruptFile, write_json
from negd.state import State
from negd.validation import NegdError

__all__ = ["RunResult", "run_experiment", "resume_experiment", "default_run_dir", "load_run_config"]

SnapshotHook = Callable[[int, int], None]


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    state: str  # "complete" | "interrupted"
    report: Path | None
    report_message: str | None


# --------------------------------------------------------------------------- set-up
def default_run_dir(config: ExperimentConfig, root: Path = Path("runs")) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"{config.experiment}-{config.scale}-seed{config.seed}-{stamp}"


def _resolved_config(config: ExperimentConfig, arms: list[Arm], path: dict, n_params: int) -> dict:
    d = config.to_user_dict()
    d = {"run_kind": "experiment", "experiment": config.experiment, "scale": config.scale, **d}
    d["n_params"] = n_params
    d["sigma"] = config.sigma
    if config.init.kind == "torch":
        d["init"] = {"kind": "torch", "sigma0": None}
    d["arms"] = [a.to_json() for a in arms]
    d["versions"] = versions()
    d["kernel"] = path["kernel"]
    d["compute_path"] = path
    d.update(settings_record(settings_of(config, arms)))
    d["created"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return d


# --------------------------------------------------------------------------- one arm
def _advance_ne(rule: Neuroevolution, state: State, loss_fn: MLPLoss, steps: int, progress: ArmProgress,
                pace: dict) -> tuple[State, Tally]:
    """``steps`` NE steps in chunks of about a second (advance_paced; same numbers as one call: counter-based
    RNG)."""
    tally = zero_tally(state)
    chunks = advance_paced(rule, state, loss_fn, state.step + steps, tally, pace)
    for state, tally, chunk in chunks:  # noqa: B007 - the last chunk's state and tally are the result
        progress.update(chunk * state.n_realizations)
    return state, tally


def _arm_shape(problem: Problem, index: int, arm: Arm, settings: dict) -> ArmShape:
    config = problem.config
    return ArmShape(index, arm, int(problem.x0.shape[0]), config.trajectories, config.seed,
                    problem.twin_realizations, problem.ensemble_twin, settings)


def _restore_or_reset(problem: Problem, run_dir: Path, index: int, arm: Arm,
                      settings: dict) -> Restored | None:
    """The arm's saved state; a damaged or foreign file is set aside (``*.corrupt``) with one line on
    stderr, and the arm starts again (same numbers: the random numbers are counter based)."""
    folder = arm_dir(run_dir, index)
    try:
        return restore_arm(folder, _arm_shape(problem, index, arm, settings), problem.device)
    except CorruptFile as e:
        print(f"negd: {e.path}: {e.problem}; recomputing arm {index} from the start", file=sys.stderr)
        for name in ("checkpoint.pt", SNAPSHOTS, SNAPSHOT_LOG):
            if (folder / name).exists():
                (folder / name).replace(folder / f"{name}.corrupt")
        return None


@dataclass(frozen=True)
class Sharding:
    """``shards`` blocks of realizations per arm, advanced by ``executor``
    (negd.experiments.shards.inprocess);
    each shard checkpoints its progress every ``checkpoint_seconds`` (negd.experiments.shards.files)."""

    shards: int
    executor: ShardExecutor
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS


def _twin_threads(gd_rule: UpdateRule, gd: State, twin_loss_fn):
    """All threads for an ensemble twin that the fused kernel advances (it splits realizations over
    threads, and its numbers do not depend on how many); one thread otherwise (environment.one_thread)."""
    if gd.n_realizations > 1 and fused_step_fn(gd_rule, gd, twin_loss_fn) is not None:
        return nullcontext()
    return one_thread()


def _advance_interval(problem: Problem, run_dir: Path, index: int, ne_rule: Neuroevolution,
                      gd_rule: UpdateRule, ne: State, gd: State, dn: int, dg: int, progress: ArmProgress,
                      pace: dict, sharding: Sharding | None, settings: str) -> tuple[State, State, Tally]:
    """NE by ``dn`` steps and the twin by ``dg``, whole or as shards merged by realization id (the same
    numbers: counter-based random numbers, realizations independent). Shards checkpoint into
    ``arms/<index>/shards/`` (their owner: ``settings``, as the arm checkpoint's)."""
    twin_loss_fn = problem.twin_loss_fn
    if sharding is None:
        ne, tally = _advance_ne(ne_rule, ne, problem.loss_fn, dn, progress, pace)
        with _twin_threads(gd_rule, gd, twin_loss_fn):
            gd, _ = advance_counted(gd_rule, gd, twin_loss_fn, dg)
        return ne, gd, tally

    folder = shard_folder(run_dir, index)
    folder.mkdir(parents=True, exist_ok=True)

    def job(kind: str, start: int, steps: int) -> ShardJob:
        return ShardJob(kind, index, start, steps, str(folder), settings, sharding.checkpoint_seconds)

    ne, tally = advance_sharded(sharding.executor, job("ne", ne.step, dn), ne, sharding.shards,
                                (ne_rule, problem.loss_fn), progress.update)
    with _twin_threads(gd_rule, gd, twin_loss_fn):
        if problem.ensemble_twin:
            gd, _ = advance_sharded(sharding.executor, job("twin", gd.step, dg), gd, sharding.shards,
                                    (gd_rule, twin_loss_fn), lambda n: None)
        else:  # one noiseless GD run: nothing to split
            gd, _ = advance_counted(gd_rule, gd, twin_loss_fn, dg)
    return ne, gd, tally


def _run_arm(problem: Problem, run_dir: Path, index: int, arm: Arm, restored: Restored | None,
             progress: ArmProgress, on_snapshot: SnapshotHook | None, on_saved: Callable[[float], None],
             settings: dict, sharding: Sharding | None = None, hooks: tuple = ()) -> None:
    config = problem.config
    folder = arm_dir(run_dir, index)
    ne_rule, gd_rule = problem.ne_rule(arm), problem.gd_rule(arm)
    twin_loss_fn = problem.twin_loss_fn
    n_traj = config.trajectories
    n_params = problem.x0.shape[0]
    # Written into every checkpoint: whose it is and with which settings it was computed.
    owner = {"arm": index, "settings": json.dumps(settings, sort_keys=True, default=str)}
    if restored is not None:
        ne, gd, rows, wall = restored.ne, restored.gd, restored.rows, restored.wall
        # the log holds exactly the checkpoint's rows before more are appended
        rewrite_log(folder, [stack_rows([row], n_traj, n_params) for row in rows])
    else:
        start_log(folder)
        start = time.perf_counter()
        ne = ne_rule.init(problem.x0, problem.loss_fn, seed=config.seed, realizations=arm.realizations)
        with one_thread():
            gd = gd_rule.init(problem.x0, twin_loss_fn, seed=config.seed,
                              realizations=problem.twin_realizations)
            rows = [snapshot_row(problem, arm, 0, ne, gd, None, 0, n_traj)]
        wall = time.perf_counter() - start
        rows[0]["wall_seconds"] = wall
        _save(folder, rows, n_traj, n_params, ne, gd, wall, owner)
        on_saved(wall)
        if on_snapshot is not None:
            on_snapshot(index, 0)
        _snapshot_event(hooks, index, arm, rows[0])
    progress.start_arm(f"arm {index} ({arm.label})", arm.realizations * arm.ne_steps,
                       arm.realizations * arm.snapshots[len(rows) - 1])
    pace: dict = {}
    for row in range(len(rows), len(arm.snapshots)):
        start = time.perf_counter()
        dn = arm.snapshots[row] - arm.snapshots[row - 1]
        dg = arm.gd_step_of(arm.snapshots[row]) - arm.gd_step_of(arm.snapshots[row - 1])
        ne, gd, tally = _advance_interval(problem, run_dir, index, ne_rule, gd_rule, ne, gd, dn, dg, progress,
                                          pace, sharding, owner["settings"])
        with one_thread():
            rows.append(snapshot_row(problem, arm, row, ne, gd, tally, dn, n_traj))
        wall += time.perf_counter() - start
        rows[-1]["wall_seconds"] = wall
        _save(folder, rows, n_traj, n_params, ne, gd, wall, owner)
        if sharding is not None:  # the interval is in the arm checkpoint: its shard files are done
            clear_shard_files(shard_folder(run_dir, index))
        on_saved(wall)
        if on_snapshot is not None:
            on_snapshot(index, row)
        _snapshot_event(hooks, index, arm, rows[row])
    consolidate(folder, stack_rows(rows, n_traj, n_params))  # the complete arm's rows in one snapshots.npz


def _snapshot_event(hooks: tuple, index: int, arm: Arm, row: dict) -> None:
    """Event("runner", NE step, the snapshot's scalar numbers, {arm, label}) to every callback."""
    if hooks:
        tags = {"arm": index, "label": arm.label}
        emit(hooks, Event("runner", int(row["ne_step"]), scalar_metrics(row), tags))


def _save(folder: Path, rows: list[dict], n_traj: int, n_params: int, ne: State, gd: State,
          wall: float, owner: dict) -> None:
    # The row first, then the checkpoint: on resume, rows beyond the checkpoint's count are dropped.
    # Appended, not the whole file rewritten: a snapshot costs O(1), not O(rows).
    append_snapshot(folder, stack_rows(rows[-1:], n_traj, n_params))
    save_checkpoint(folder / "checkpoint.pt", {
        "ne": ne.to("cpu").to_dict(), "gd": gd.to("cpu").to_dict(),
        "rows": len(rows), "wall_seconds": wall, **owner})


# --------------------------------------------------------------------------- whole runs
def _build_report(run_dir: Path) -> tuple[Path | None, str | None]:
    """negd.analysis.build_report, or a one-line reason why there is no report."""
    try:
        from negd.analysis import build_report
    except ImportError as e:
        return None, f"report skipped: negd.analysis.build_report is not available ({e})"
    try:
        return build_report(run_dir), None
    except NegdError as e:
        return None, f"report failed: {e}"
    except Exception as e:  # noqa: BLE001 - a figure or analysis bug: the status must say "failed"
        return None, f"report failed ({type(e).__name__}: {str(e)[:MAX_QUOTE]}); the run's numbers are kept"


def _compute_path(problem: Problem, arms: list[Arm], sharding: Sharding | None = None) -> dict:
    """Kernel or torch, dtypes, device, versions of this process for ``problem`` (provenance.compute_path),
    and the shard count and engine of a sharded run (recorded; they do not change the numbers)."""
    rule = problem.ne_rule(arms[0])
    probe = rule.init(problem.x0, problem.loss_fn, seed=problem.config.seed, realizations=1)
    kernel = fused_step_fn(rule, probe, problem.loss_fn) is not None
    extra = {} if sharding is None else {"shards": sharding.shards, "engine": sharding.executor.label}
    return compute_path(kernel=kernel, params=probe.params, loss=probe.loss, device=problem.device, **extra)


def _sharding(config: ExperimentConfig, arms: list[Arm], shards: int | None, ray: str | None,
              checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS) -> Sharding | None:
    """None (the whole ensemble at once, as without shards) unless ``shards`` or ``ray`` is given."""
    from negd.experiments.shards.inprocess import InProcessShards

    k = check_shards(shards, arms)
    seconds = check_checkpoint_seconds(checkpoint_seconds)
    if ray is None:
        return None if k is None else Sharding(k, InProcessShards(), seconds)
    from negd.experiments.shards.on_ray import RayShards

    executor = RayShards.connect(ray, config)
    if k is None:  # one shard per CPU of the cluster, at most one per realization
        k = max(1, min(executor.cpus, min(a.realizations for a in arms)))
    return Sharding(k, executor, seconds)


def _refuse_used_dir(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(p.name != LOCK_NAME for p in run_dir.iterdir())):
        raise NegdError(f"--out: {str(run_dir)!r} exists and is not empty; choose another directory or "
                        f"continue that run with --resume {run_dir}")


def run_experiment(config: ExperimentConfig, out: Path | None = None, *, progress: bool = True,
                   on_snapshot: SnapshotHook | None = None, report: bool = True, shards: int | None = None,
                   ray: str | None = None,
                   shard_checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
                   callbacks: Callback | Iterable[Callback] | None = None) -> RunResult:
    """Run ``config`` into a new directory ``out`` (default ``runs/...``); refuses a non-empty ``out``
    and one another process is writing (the run directory's lock, negd.experiments.run.lock).

    ``shards``: split every arm's realizations into that many shards (same numbers);
    ``ray``: "local" or a cluster address, one Ray task per shard (negd.experiments.shards.on_ray);
    ``shard_checkpoint_seconds``: seconds of work between two checkpoints of a shard;
    ``callbacks``: each gets an Event("runner", ...) per snapshot of every arm (negd.callbacks);
    ``on_snapshot(arm index, row)``: called after each snapshot is saved (a control hook: it may raise
    KeyboardInterrupt to stop the run there).
    """
    run_dir = Path(out) if out is not None else default_run_dir(config)
    _refuse_used_dir(run_dir)
    arms = config.arms()
    if config.n_params is not None:
        check_memory(config, arms)  # before anything is allocated or written
    problem = Problem.build(config)
    if config.n_params is None:  # an objective: its size is known once it is imported
        check_memory(config, arms, n_params=problem.x0.shape[0])
    # before anything is written: errors leave no trace
    sharding = _sharding(config, arms, shards, ray, shard_checkpoint_seconds)
    created = not run_dir.exists()
    try:
        with run_dir_lock(run_dir):
            _refuse_used_dir(run_dir)  # again under the lock: another writer may have started meanwhile
            path = _compute_path(problem, arms, sharding)
            write_json(run_dir / "config.json", _resolved_config(config, arms, path, problem.x0.shape[0]))
            write_status(run_dir, "running", [], 0.0)
            return _execute(problem, arms, run_dir, progress, on_snapshot, report, sharding,
                            as_callbacks(callbacks))
    except BaseException:
        if created:  # a start refused or failed before config.json: leave no empty directory behind
            remove_unstarted(run_dir)
        raise
    finally:
        if sharding is not None:
            sharding.executor.close()


def resume_experiment(run_dir: Path, *, progress: bool = True, on_snapshot: SnapshotHook | None = None,
                      report: bool = True, allow_path_change: bool = False, shards: int | None = None,
                      ray: str | None = None,
                      shard_checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
                      callbacks: Callback | Iterable[Callback] | None = None) -> RunResult:
    """Continue an interrupted run in ``run_dir`` from its checkpoints (same numbers as no interruption).

    Refused when another process writes ``run_dir``, when config.json was edited, or when this
    process would compute on another path (kernel/torch, dtypes, device, versions) than the run
    was started on; ``allow_path_change`` allows the latter and records it in config.json. Without
    ``shards`` a sharded run continues with its recorded shard count (any count gives the same numbers);
    with the same count, shards whose checkpoint of the interrupted interval is complete are not recomputed.
    """
    run_dir = Path(run_dir)
    config, arms = load_run_config(run_dir)
    if shards is None:
        shards = recorded_shards(run_dir)
    check_shards(shards, arms)
    check_checkpoint_seconds(shard_checkpoint_seconds)
    with run_dir_lock(run_dir):
        config, arms = load_run_config(run_dir)  # again under the lock
        # before anything is changed: a machine with less memory refuses in one line
        if config.n_params is not None:
            check_memory(config, arms)
        problem = Problem.build(config)
        if config.n_params is None:  # an objective: its size is known once it is imported
            check_memory(config, arms, n_params=problem.x0.shape[0])
        sharding = _sharding(config, arms, shards, ray, shard_checkpoint_seconds)
        try:
            check_compute_path(run_dir, _compute_path(problem, arms, sharding), allow_path_change)
            return _execute(problem, arms, run_dir, progress, on_snapshot, report, sharding,
                            as_callbacks(callbacks))
        finally:
            if sharding is not None:
                sharding.executor.close()


def _execute(problem: Problem, arms: list[Arm], run_dir: Path, show_progress: bool,
             on_snapshot: SnapshotHook | None, report: bool, sharding: Sharding | None = None,
             hooks: tuple = ()) -> RunResult:
    settings = settings_of(problem.config, arms)
    restored = [_restore_or_reset(problem, run_dir, i, arm, settings) for i, arm in enumerate(arms)]
    done_rows = [0 if r is None else len(r.rows) for r in restored]
    walls = [0.0 if r is None else r.wall for r in restored]
    progress = ArmProgress(show_progress)  # one bar per arm (negd.progress)
    complete = [i for i, (a, n) in enumerate(zip(arms, done_rows)) if n == len(a.snapshots)]
    state = "interrupted"
    try:
        write_status(run_dir, "running", complete, sum(walls))
        for index, arm in enumerate(arms):
            if index in complete:
                continue

            def saved(wall: float, index: int = index) -> None:
                walls[index] = wall
                write_status(run_dir, "running", complete, sum(walls))

            _run_arm(problem, run_dir, index, arm, restored[index], progress, on_snapshot, saved, settings,
                     sharding, hooks)
            restored[index] = None  # free the restored rows
            complete.append(index)
            write_status(run_dir, "running", complete, sum(walls))
        for index in range(len(arms)):  # left over by a stop between an arm's last save and clean-up
            clear_shard_files(shard_folder(run_dir, index))
            consolidate(arm_dir(run_dir, index))
        state = "complete"
    except KeyboardInterrupt:
        pass  # every completed snapshot is on disk; report what exists and say how to resume
    finally:
        # Reached on success, Ctrl-C and errors alike: the status always tells what exists.
        progress.close()
        write_status(run_dir, state, complete, sum(walls))
    if not report:
        return RunResult(run_dir, state, None, None)
    write_status(run_dir, state, complete, sum(walls), report="pending")
    try:
        report_path, message = _build_report(run_dir)
    except KeyboardInterrupt:
        # A run is "complete" only with its report: say what is missing and how to get it.
        write_status(run_dir, "interrupted", complete, sum(walls), report="interrupted")
        done = "every arm is complete" if state == "complete" else "the arms are incomplete"
        return RunResult(run_dir, "interrupted", None,
                         f"interrupted while writing the report ({done}); resuming writes it")
    write_status(run_dir, state, complete, sum(walls), report="written" if report_path else "failed")
    return RunResult(run_dir, state, report_path, message)
