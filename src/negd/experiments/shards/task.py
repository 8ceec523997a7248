"""One shard's snapshot interval: the function every shard executor runs (in-process or as a Ray task).

:func:`run_shard` advances a shard (a block of realizations, negd.experiments.shards.inprocess) from the
interval's start step to its target step:

1. it continues from the shard's checkpoint when one of this interval exists
   (negd.experiments.shards.files), and returns at once when that checkpoint is complete;
2. it advances in chunks of about a second (:func:`advance_paced`; the counter-based random numbers
   of negd.rng make chunks give the numbers of one call), reports each chunk's steps (progress bar)
   and saves a checkpoint every ``checkpoint_seconds`` of work;
3. it checks the result (:func:`check_result`: the shard's realization ids, the target step, finite
   parameters and losses) before it saves it as complete, so a bad result is never kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from negd.engine import Tally, advance_tallied
from negd.experiments.shards.files import checkpoint_path, load_shard, save_shard
from negd.experiments.shards.job import DEFAULT_CHECKPOINT_SECONDS, ShardJob
from negd.state import State
from negd.validation import NegdError

__all__ = ["CHUNK_SECONDS", "DEFAULT_CHECKPOINT_SECONDS", "ShardJob", "ShardResult", "advance_paced",
           "run_shard", "check_result", "check_checkpoint_seconds", "shard_name", "zero_tally"]

# Target duration of one advance_tallied call, so that the progress bar moves about once a second.
CHUNK_SECONDS = 1.0

OnSteps = Callable[[int], None]


@dataclass(frozen=True)
class ShardResult:
    """A shard at the interval's target step, its tally over the interval, the step of the checkpoint this
    attempt continued from (None: it computed the whole interval) and the attempt's number."""

    state: State
    tally: Tally
    resumed_from: int | None = None
    attempt: int = 1


def check_checkpoint_seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise NegdError(f"shard_checkpoint_seconds: must be a number of seconds > 0, got {value!r}")
    return float(value)


def shard_name(job: ShardJob, index: int, shard: State) -> str:
    """``shard 2 of arm 0 (NE, realizations 5-6)``: how errors and notes name a shard."""
    ids = shard.realization
    kind = "NE" if job.kind == "ne" else "twin"
    return f"shard {index} of arm {job.arm_index} ({kind}, realizations {int(ids[0])}-{int(ids[-1])})"


def zero_tally(state: State) -> Tally:
    zeros = torch.zeros(state.n_realizations, dtype=torch.int64, device=state.params.device)
    return Tally(zeros, zeros.clone())


def advance_paced(rule, state: State, loss_fn, target_step: int, tally: Tally, pace: dict,
                  seconds: float = CHUNK_SECONDS) -> Iterator[tuple[State, Tally, int]]:
    """``state`` advanced to ``target_step`` in chunks of about ``seconds`` (``pace`` keeps the measured
    steps per second between calls); yields the state, ``tally`` plus the chunks' tallies, and the
    chunk's steps after each chunk."""
    accepted, ties = tally.accepted.clone(), tally.ties.clone()
    while state.step < target_step:
        chunk = min(target_step - state.step, max(1, int(pace.get("steps_per_s", 1.0) * seconds)))
        start = time.perf_counter()
        state, step_tally = advance_tallied(rule, state, loss_fn, chunk)
        pace["steps_per_s"] = chunk / max(time.perf_counter() - start, 1e-6)
        accepted += step_tally.accepted.to(accepted.device)
        ties += step_tally.ties.to(ties.device)
        yield state, Tally(accepted, ties), chunk


def run_shard(job: ShardJob, shard: State, rule, loss_fn, on_steps: OnSteps, pace: dict) -> ShardResult:
    """``shard`` (at ``job.start_step``) advanced to ``job.target_step``, continuing from its checkpoint
    when there is one; ``on_steps(n)``: n more steps done (those of a checkpoint included)."""
    path = checkpoint_path(job, shard)
    saved = None if path is None else load_shard(path, job, shard)
    if saved is None:
        state, tally, attempt, resumed_from = shard, zero_tally(shard), 1, None
    else:
        state, tally, attempt, resumed_from = saved.state, saved.tally, saved.attempt + 1, saved.state.step
        on_steps(state.step - job.start_step)
        if state.step == job.target_step:  # complete (it was checked before it was saved)
            return ShardResult(state, tally, resumed_from, attempt)
    last_save = time.perf_counter()
    chunks = advance_paced(rule, state, loss_fn, job.target_step, tally, pace,
                           min(CHUNK_SECONDS, job.checkpoint_seconds))
    for state, tally, chunk in chunks:  # noqa: B007 - the last chunk's state and tally are the result
        on_steps(chunk)
        if path is not None and time.perf_counter() - last_save >= job.checkpoint_seconds \
                and state.step < job.target_step:
            save_shard(path, job, state, tally, attempt)
            last_save = time.perf_counter()
    check_result(job, shard, state, tally)
    if path is not None:
        save_shard(path, job, state, tally, attempt)  # complete: a retry or --resume reuses it
    return ShardResult(state, tally, resumed_from, attempt)


def check_result(job: ShardJob, shard: State, state: State, tally: Tally) -> None:
    """NegdError (one line) when a shard's result cannot be merged: other realization ids or size, another
    step than the interval's target, non-finite parameters or losses (never accepted by any rule)."""
    n = shard.n_realizations
    if state.realization.shape != shard.realization.shape or \
            not torch.equal(state.realization.cpu(), shard.realization.cpu()):
        raise NegdError(f"returned other realizations than its {n}")
    if state.params.shape != shard.params.shape or tally.accepted.shape != (n,) or tally.ties.shape != (n,):
        raise NegdError(f"returned params {list(state.params.shape)} and tallies "
                        f"{list(tally.accepted.shape)}, expected {list(shard.params.shape)} and [{n}]")
    if state.step != job.target_step:
        raise NegdError(f"returned step {state.step}, expected {job.target_step}")
    bad = ~torch.isfinite(state.params).all(dim=1) | ~torch.isfinite(state.loss)
    if bad.any():
        first = int(state.realization[bad.nonzero()[0, 0]])
        raise NegdError(f"non-finite parameters or loss at step {state.step} in {int(bad.sum())} "
                        f"realization(s), the first {first}")
