"""Shards: an ensemble split into K contiguous blocks of realization ids, advanced one by one.

negd's random numbers are a pure function of (seed, realization id, step, stream) (:mod:`negd.rng`)
and every update rule treats realizations independently, so between two snapshots a block of
realizations (:meth:`negd.state.State.chunk`) can be advanced on its own, anywhere, and the blocks
put back together (:meth:`negd.state.State.concat`) in realization order give the same state, bit
for bit, as advancing the whole ensemble. The snapshot statistics are then computed on that merged
state, so a sharded run directory holds the numbers of the unsharded one.

Executors advance a list of shards by some steps and return them in the order given (that is,
by realization id, never by completion order), each shard by the same function,
:func:`negd.experiments.shards.task.run_shard` (which checkpoints the shard's progress):

* :class:`InProcessShards`: one after the other in this process (``--shards K``);
* :class:`negd.experiments.shards.on_ray.RayShards`: one Ray task per shard (``--ray``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

import torch

from negd.engine import Tally
from negd.experiments.config.schema import Arm
from negd.experiments.shards.task import ShardJob, ShardResult, check_result, run_shard, shard_name
from negd.state import State
from negd.validation import NegdError

__all__ = ["shard_bounds", "check_shards", "split", "merge", "ShardJob", "ShardExecutor", "InProcessShards",
           "advance_sharded"]

# Largest shard count accepted (far beyond any machine: each shard is one task per snapshot interval).
MAX_SHARDS = 100_000


def shard_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """``k`` contiguous ``(start, stop)`` row ranges covering ``0..n``, sizes differing by at most one
    (the first ``n % k`` shards get the extra row); fewer when ``n < k`` (never an empty shard)."""
    k = max(1, min(k, n))
    size, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def check_shards(shards: object, arms: list[Arm]) -> int | None:
    """The validated shard count (None: not sharded). K larger than an arm's NE realizations is an
    error (a shard of no realization computes nothing); an ensemble twin with fewer realizations
    than K simply gets fewer shards."""
    if shards is None:
        return None
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise NegdError(f"shards: must be an integer in [1, {MAX_SHARDS}], got {shards!r}")
    smallest = min(arms, key=lambda a: a.realizations)
    if shards > smallest.realizations:
        raise NegdError(f"shards: {shards} is more than the {smallest.realizations} realizations of arm "
                        f"{smallest.label!r}; give at most {smallest.realizations}")
    return shards


def split(state: State, k: int) -> list[State]:
    """``state`` as up to ``k`` shards of contiguous realizations (realization order)."""
    return [state.chunk(start, stop) for start, stop in shard_bounds(state.n_realizations, k)]


def merge(states: list[State]) -> State:
    """Shards back into one state, ordered by realization id whatever order they were given in."""
    ordered = sorted(states, key=lambda s: int(s.realization[0]))
    return ordered[0] if len(ordered) == 1 else State.concat(ordered)


Dynamics = tuple[object, object]  # (update rule, loss function) of the shards' kind, in this process
Progress = Callable[[int], None]  # n more realization-steps of NE done


class ShardExecutor(Protocol):
    """Advances every shard of ``job`` by :func:`negd.experiments.shards.task.run_shard`; returns their
    results in the order given. ``dynamics`` serve the shards run in this process."""

    label: str

    def advance(self, job: ShardJob, shards: list[State], dynamics: Dynamics,
                progress: Progress) -> list[ShardResult]: ...

    def close(self) -> None: ...


def realization_steps(job: ShardJob, shard: State, steps: int) -> int:
    """What the progress bar counts: NE realization-steps (the twin's are not counted)."""
    return steps * shard.n_realizations if job.kind == "ne" else 0


class InProcessShards:
    """Every shard in this process, one after the other. A shard that raises fails the run with one line
    naming it; the shards finished before it keep their checkpoints for ``--resume``."""

    label = "in-process"

    def __init__(self) -> None:
        self._pace: dict = {}  # per shard: measured steps per second (chunks of about a second)

    def advance(self, job: ShardJob, shards: list[State], dynamics: Dynamics,
                progress: Progress) -> list[ShardResult]:
        rule, loss_fn = dynamics
        results = []
        for index, shard in enumerate(shards):
            pace = self._pace.setdefault((job.kind, job.arm_index, int(shard.realization[0])), {})
            on_steps = lambda n, shard=shard: progress(realization_steps(job, shard, n))  # noqa: E731
            try:
                results.append(run_shard(job, shard, rule, loss_fn, on_steps, pace))
            except Exception as e:  # KeyboardInterrupt passes: Ctrl-C stops the run, not the shard
                raise NegdError(f"{shard_name(job, index, shard)} failed: {first_line(e)}") from None
        return results

    def close(self) -> None:
        pass


def first_line(e: BaseException) -> str:
    """An exception as one short line (its message's last line: Ray puts the cause there)."""
    lines = str(e).strip().splitlines()
    text = lines[-1] if lines else type(e).__name__
    return text[:300] if isinstance(e, NegdError) else f"{type(e).__name__}: {text[:300]}"


def advance_sharded(executor: ShardExecutor, job: ShardJob, state: State, k: int, dynamics: Dynamics,
                    progress: Progress) -> tuple[State, Tally]:
    """``state`` advanced ``job.steps`` steps as ``k`` shards by ``executor``, each result checked
    (negd.experiments.shards.task.check_result), merged by realization id (the tallies in the same order).
    A shard that continued from its checkpoint says so on stderr (one line)."""
    shards = split(state, k)
    results = executor.advance(job, shards, dynamics, progress)
    for index, (shard, result) in enumerate(zip(shards, results)):
        try:
            check_result(job, shard, result.state, result.tally)
        except NegdError as e:
            raise NegdError(f"{shard_name(job, index, shard)} failed: {e}") from None
        if result.resumed_from is not None:
            done = "was complete" if result.resumed_from == job.target_step else "continued from it"
            print(f"negd: {shard_name(job, index, shard)}: found its checkpoint at step "
                  f"{result.resumed_from} of {job.start_step}-{job.target_step} and {done} "
                  f"(attempt {result.attempt})",
                  file=sys.stderr)
    order = sorted(range(len(results)), key=lambda i: int(results[i].state.realization[0]))
    merged = merge([results[i].state for i in order])
    tallies = [results[i].tally for i in order]
    tally = Tally(torch.cat([t.accepted for t in tallies]), torch.cat([t.ties for t in tallies]))
    return merged, tally
