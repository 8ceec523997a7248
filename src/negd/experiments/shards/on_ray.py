"""Shards as Ray tasks (``--ray local`` or ``--ray ADDRESS``; the optional extra ``negd[ray]``).

Each shard's advance between two snapshots is one Ray core task with plain inputs: the
configuration (a JSON-able dict), the job (negd.experiments.shards.task.ShardJob: arm, "ne" or
"twin", step range, checkpoint folder) and the shard's state as numpy arrays (its realization ids
among them). The worker rebuilds the problem from the configuration (cached per worker process),
pins torch, hence the C kernel, to one thread so that the workers of a machine do not fight over
its cores, and runs :func:`negd.experiments.shards.task.run_shard`, the function in-process shards
run: it checkpoints the shard's progress into the run directory and writes a progress record
that the driver reads to move the progress bar during the interval. A task whose worker died is
retried by Ray (TASK_RETRIES) and continues from the shard's checkpoint; the random numbers are a
pure function of (seed, realization id, step), so it ends with exactly the numbers of an
uninterrupted task. A task that raised is not retried: the run fails with one line naming the
shard. The driver merges the results by realization id, never by completion order
(negd.experiments.shards.inprocess).

Ray is imported only here and only when asked for; Ray is never started implicitly.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from typing import Any

import numpy as np
import torch

from negd.engine import Tally
from negd.experiments.config.schema import ExperimentConfig, config_from_dict
from negd.experiments.shards.files import progress_path, read_progress, write_progress
from negd.experiments.shards.inprocess import Dynamics, Progress, first_line, realization_steps
from negd.experiments.shards.task import ShardJob, ShardResult, run_shard, shard_name
from negd.state import State
from negd.validation import NegdError

__all__ = ["RayShards", "advance_shard", "state_to_arrays", "state_from_arrays"]

# Seconds to wait for a cluster address to accept a connection (Ray itself retries for minutes).
CONNECT_TIMEOUT = 5.0
RAY_DEFAULT_PORT = 6379
# Retries of a task whose worker process died (killed, out of memory, node lost).
TASK_RETRIES = 3
# Seconds between two looks at the shards' progress records while their tasks run.
POLL_SECONDS = 0.5
MISSING = "--ray: Ray is not installed; install the extra: pip install -e '.[ray]' (or pip install ray)"


def _import_ray():
    try:
        import ray
    except ImportError:
        raise NegdError(MISSING) from None
    return ray


# --------------------------------------------------------------------------- plain inputs and outputs
def state_to_arrays(state: State) -> dict[str, Any]:
    """A state as numpy arrays and ints (what a Ray task takes and returns)."""
    arrays = {k: getattr(state, k).detach().cpu().numpy() for k in ("params", "loss", "realization",
                                                                    "accepted", "tied")}
    arrays["extras"] = {k: v.detach().cpu().numpy() for k, v in state.extras.items()}
    return {**arrays, "step": state.step, "seed": state.seed}


def state_from_arrays(d: dict[str, Any]) -> State:
    """Inverse of :func:`state_to_arrays` (copies: Ray returns read-only arrays)."""
    tensor = lambda a: torch.from_numpy(np.array(a, copy=True))  # noqa: E731
    return State(tensor(d["params"]), tensor(d["loss"]), int(d["step"]), int(d["seed"]),
                 tensor(d["realization"]), tensor(d["accepted"]),
                 {k: tensor(v) for k, v in d["extras"].items()}, tensor(d["tied"]))


def config_payload(config: ExperimentConfig) -> dict:
    """The configuration as plain JSON values, enough to rebuild it in a worker."""
    return {"user": config.to_user_dict(), "experiment": config.experiment, "scale": config.scale}


_PROBLEMS: dict[str, Any] = {}  # per worker process: configuration -> its problem (built once)


def _problem(payload: dict):
    from negd.experiments.run.problem import Problem  # the runner's own set-up, so the numbers are its

    key = json.dumps(payload, sort_keys=True, default=str)
    if key not in _PROBLEMS:
        config = config_from_dict(payload["user"], experiment=payload["experiment"], scale=payload["scale"])
        _PROBLEMS[key] = Problem.build(config)
    return _PROBLEMS[key]


_PACE: dict = {}  # per worker process and shard: measured steps per second (chunks of about a second)


def advance_shard(payload: dict, job: ShardJob, shard: dict) -> dict:
    """One shard's interval (the body of a Ray task; plain inputs and outputs): the problem rebuilt from
    the configuration, then :func:`negd.experiments.shards.task.run_shard`, as in-process shards do."""
    torch.set_num_threads(1)  # one core per task: the C kernel uses torch's thread count
    problem = _problem(payload)
    arm = problem.config.arms()[job.arm_index]
    if job.kind == "ne":
        rule, loss_fn = problem.ne_rule(arm), problem.loss_fn
    else:
        rule, loss_fn = problem.gd_rule(arm), problem.twin_loss_fn
    state = state_from_arrays(shard)
    record = progress_path(job, state)
    step = [job.start_step]

    def on_steps(n: int) -> None:  # the driver's progress bar reads this record
        step[0] += n
        if record is not None:
            write_progress(record, step[0])

    pace = _PACE.setdefault((json.dumps(payload, sort_keys=True, default=str), job.kind, job.arm_index,
                             int(state.realization[0])), {})
    result = run_shard(job, state, rule, loss_fn, on_steps, pace)
    return {"state": state_to_arrays(result.state), "accepted": result.tally.accepted.numpy(),
            "ties": result.tally.ties.numpy(), "resumed_from": result.resumed_from, "attempt": result.attempt}


# --------------------------------------------------------------------------- the executor
class RayShards:
    """Advances shards as Ray tasks; stops the cluster it started (``--ray local``), no other."""

    label = "ray"

    def __init__(self, ray, payload: dict, started: bool) -> None:
        self._ray = ray
        self._payload = payload
        self._started = started
        # A task whose worker died is retried (it continues from the shard's checkpoint); one that
        # raised is not (the same inputs would raise again).
        self._task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=False)(advance_shard)
        self.cpus = int(ray.cluster_resources().get("CPU", 1))

    @staticmethod
    def connect(address: str, config: ExperimentConfig) -> RayShards:
        """``address`` "local" (start a local cluster for this run) or a running cluster's address.
        A Ray session this process already opened (e.g. a test's) is used as it is."""
        if not isinstance(address, str) or not address.strip():
            raise NegdError(f"--ray: must be 'local' or a cluster address (host:port), got {address!r}")
        ray = _import_ray()
        if ray.is_initialized():
            return RayShards(ray, config_payload(config), started=False)
        options = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        if address not in ("local", "auto"):
            _check_reachable(address)
        handlers = _signal_handlers()
        try:
            if address == "local":
                ray.init(**options)
            else:
                ray.init(address=address, **options)
        except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError... by version
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise NegdError(f"--ray: cannot use Ray at {address!r}: {first}") from None
        finally:
            _reinstall(handlers)
        return RayShards(ray, config_payload(config), started=True)

    def advance(self, job: ShardJob, shards: list[State], dynamics: Dynamics,
                progress: Progress) -> list[ShardResult]:
        ray = self._ray
        refs = [self._task.remote(self._payload, job, state_to_arrays(s)) for s in shards]
        position = {ref: i for i, ref in enumerate(refs)}
        results: dict[int, ShardResult] = {}
        reported = [0] * len(shards)  # steps of each shard shown on the progress bar

        def report(i: int, steps: int) -> None:
            if steps > reported[i]:
                progress(realization_steps(job, shards[i], steps - reported[i]))
                reported[i] = steps

        pending = list(refs)
        try:
            while pending:  # results as they complete, placed by their shard's position
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_SECONDS)
                for ref in done:
                    i = position[ref]
                    out = _get(ray, ref, job, i, shards[i])
                    results[i] = ShardResult(state_from_arrays(out["state"]),
                                             Tally(torch.from_numpy(np.array(out["accepted"])),
                                                   torch.from_numpy(np.array(out["ties"]))),
                                             out["resumed_from"], out["attempt"])
                    report(i, job.steps)
                for ref in pending if job.kind == "ne" else ():  # the bar moves during the interval
                    i = position[ref]
                    record = progress_path(job, shards[i])
                    step = None if record is None else read_progress(record)
                    if step is not None:
                        report(i, min(step, job.target_step) - job.start_step)
        finally:
            for ref in pending:  # a shard failed (or Ctrl-C): stop the others; their checkpoints stay
                ray.cancel(ref, force=True)
        return [results[i] for i in range(len(shards))]

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


# Signals whose handling ray.init takes over: its core worker installs a C++ failure handler that
# prints a stack dump and its Python driver one that exits with code 15 (issue 19, class 4): a
# batch scheduler's SIGTERM then lost the run's "interrupted" status, report and resume hint.
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _signal_handlers() -> dict:
    """This process's Python handlers of _SIGNALS (none outside the main thread, where none can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in _SIGNALS}


def _reinstall(handlers: dict) -> None:
    """Put back the handlers negd (or the caller) had before ray.init: signal.signal installs them
    at the C level again, over Ray's, so SIGTERM under --ray stops a run as it does without Ray."""
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


# What a gRPC server (Ray's GCS and its client server are gRPC) answers an HTTP/2 client: the client
# preface and an empty SETTINGS frame get a frame header back whose type byte (the 4th) is SETTINGS.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_H2_SETTINGS = 4


def _check_reachable(address: str) -> None:
    """A one-line error, within CONNECT_TIMEOUT, when nothing listens at ``address`` ([ray://]host[:port])
    or what listens there is not a gRPC server (Ray would retry it for minutes, with warnings)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host:
        host, port = port, str(RAY_DEFAULT_PORT)
    if not port.isdigit():
        raise NegdError(f"--ray: must be 'local' or a cluster address host:port, got {address!r}")
    try:
        connection = socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT)
    except OSError as e:
        raise NegdError(f"--ray: cannot reach a Ray cluster at {address!r} ({e.strerror or e}); start one "
                        f"(ray start --head) or use --ray local") from None
    try:
        with connection:
            connection.sendall(_H2_PREFACE)
            reply = b""
            while len(reply) < 9:
                chunk = connection.recv(9 - len(reply))
                if not chunk:
                    break
                reply += chunk
    except OSError as e:  # a timeout included: a server that says nothing
        reply = f"no answer ({e.strerror or type(e).__name__})".encode()
    if len(reply) < 9 or reply[3] != _H2_SETTINGS:
        seen = "closed the connection" if not reply else f"answered {reply[:16]!r}"
        raise NegdError(f"--ray: {address!r} is not a Ray cluster (it {seen} where Ray's gRPC server "
                        f"answers HTTP/2); give the head node's GCS address (ray start --head prints it) "
                        f"or use --ray local") from None


def _get(ray, ref, job: ShardJob, index: int, shard: State) -> dict:
    """A task's result; a task that raised (or whose retries ran out) fails the run with one line
    naming the shard."""
    try:
        return ray.get(ref)
    except Exception as e:
        cause = getattr(e, "cause", None) or e
        raise NegdError(f"{shard_name(job, index, shard)} failed on Ray: {first_line(cause)}") from None
