"""Shards: an ensemble split into K contiguous blocks of realization ids, advanced one by one.

negd's random numbers are a pure function of (seed, realization id, step, stream) (:mod:`negd.rng`)
and every update rule treats realizations independently, so between two snapshots a block of
realizations (:meth:`negd.state.State.chunk`) can be advanced on its own, anywhere, and the blocks
put back together (:meth:`negd.state.State.concat`) in realization order give the same state, bit
for bit, as advancing the whole ensemble. The snapshot statistics are then computed on that merged
state, so a sharded run directory holds the numbers of the unsharded one.

Executors advance a list of shards by some steps and return them in the order given (that is,
by realization id, never by completion order):

* :class:`InProcessShards`: one after the other in this process (``--shards K``);
* :class:`negd.experiments.ray_shards.RayShards`: one Ray task per shard (``--ray``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from negd.engine import Tally, advance_tallied
from negd.experiments.config import Arm
from negd.state import State
from negd.validation import NegdError

__all__ = ["shard_bounds", "check_shards", "split", "merge", "ShardJob", "ShardExecutor", "InProcessShards"]

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


@dataclass(frozen=True)
class ShardJob:
    """What advances a shard: ``kind`` "ne" (neuroevolution, tallied) or "twin" (the gradient twin)."""

    kind: str
    arm_index: int
    steps: int


Advance = Callable[[State, int], tuple[State, Tally]]
Progress = Callable[[int], None]


class ShardExecutor(Protocol):
    """Advances shards; returns them (and their tallies) in the order given."""

    label: str

    def advance(self, job: ShardJob, shards: list[State], local: Advance,
                progress: Progress) -> list[tuple[State, Tally]]: ...

    def close(self) -> None: ...


class InProcessShards:
    """Every shard in this process, one after the other (``local`` is the runner's own advance)."""

    label = "in-process"

    def advance(self, job: ShardJob, shards: list[State], local: Advance,
                progress: Progress) -> list[tuple[State, Tally]]:
        return [local(shard, job.steps) for shard in shards]

    def close(self) -> None:
        pass


def advance_sharded(executor: ShardExecutor, job: ShardJob, state: State, k: int, local: Advance,
                    progress: Progress) -> tuple[State, Tally]:
    """``state`` advanced ``job.steps`` steps as ``k`` shards by ``executor``, merged by realization id
    (the tallies in the same order)."""
    shards = split(state, k)
    results = executor.advance(job, shards, local, progress)
    order = sorted(range(len(results)), key=lambda i: int(results[i][0].realization[0]))
    merged = merge([results[i][0] for i in order])
    tallies = [results[i][1] for i in order]
    tally = Tally(torch.cat([t.accepted for t in tallies]), torch.cat([t.ties for t in tallies]))
    return merged, tally


def plain_advance(rule, loss_fn) -> Advance:
    """``advance_tallied`` of ``rule`` on ``loss_fn``: the advance of a twin shard."""
    return lambda state, steps: advance_tallied(rule, state, loss_fn, steps)
