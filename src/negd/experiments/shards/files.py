"""Per-shard checkpoints: a shard's progress inside one snapshot interval, kept in the run directory.

Between two snapshots a sharded run advances every shard (negd.experiments.shards.inprocess) from the
interval's start step to its target step. Each shard saves its own progress, every
``checkpoint_seconds`` of work and once more when it completes, to::

    DIR/arms/<i>/shards/<kind>-<start>-<stop>.pt        kind "ne" or "twin"; realization ids start..stop-1
    DIR/arms/<i>/shards/<kind>-<start>-<stop>.progress  {"step", "pid"}: the driver's progress bar reads it

A checkpoint holds the interval (start and target step), the owner (arm index and the settings
the arm checkpoint records), the shard's state (its realization ids among them), the accepted
moves and ties counted since the interval's start, the task attempt that wrote it and that
worker's pid. A shard task (in this process, a Ray task retried after its worker died, or the
same shard after ``--resume``) that finds a checkpoint of its interval continues from it, or
returns it at once when it is complete. Once the interval is merged and the arm checkpoint saved,
the shard files are removed (:func:`clear_shard_files`).

Files are written atomically (negd.experiments.run.store; not synced to disk, which would cost more
than a short interval's work) with their SHA-256 (negd.sealed). They are read through a validating
loader: a damaged file (a flipped bit fails the checksum) or a foreign one (another interval,
other realizations or settings, non-finite numbers) is ignored with one line on stderr, and the
shard recomputes its interval (the same numbers: a pure function of seed, realization id and
step, negd.rng).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import torch

from negd.engine import Tally
from negd.experiments.run.restore import checked_state
from negd.experiments.run.store import arm_dir
from negd.experiments.shards.job import ShardJob
from negd.runfiles import CorruptFile, load_torch, short, write_sealed_torch
from negd.sealed import digest_problem
from negd.state import State

__all__ = ["SHARDS_DIR", "SavedShard", "shard_folder", "checkpoint_path", "progress_path", "save_shard",
           "load_shard", "write_progress", "read_progress", "clear_shard_files"]

SHARDS_DIR = "shards"
KEYS = ("kind", "arm", "settings", "interval", "state", "accepted", "ties", "attempt", "pid")


class SavedShard:
    """A shard checkpoint that passed every check: its state, tally since the interval's start, attempt."""

    def __init__(self, state: State, tally: Tally, attempt: int) -> None:
        self.state, self.tally, self.attempt = state, tally, attempt


def shard_folder(run_dir: Path, arm: int) -> Path:
    """Where the shards of arm ``arm`` keep their files (absolute: Ray workers may run elsewhere)."""
    return arm_dir(Path(run_dir).resolve(), arm) / SHARDS_DIR


def _stem(job: ShardJob, shard: State) -> str:
    return f"{job.kind}-{int(shard.realization[0])}-{int(shard.realization[-1]) + 1}"


def checkpoint_path(job: ShardJob, shard: State) -> Path | None:
    """The shard's checkpoint file; None when the job keeps none or its folder is not visible here
    (a worker on another machine without the run directory: it then recomputes after a failure)."""
    if job.folder is None or not os.path.isdir(job.folder):
        return None
    return Path(job.folder) / f"{_stem(job, shard)}.pt"


def progress_path(job: ShardJob, shard: State) -> Path | None:
    path = checkpoint_path(job, shard)
    return None if path is None else path.with_suffix(".progress")


def save_shard(path: Path, job: ShardJob, state: State, tally: Tally, attempt: int) -> None:
    payload = {"kind": job.kind, "arm": job.arm_index, "settings": job.settings,
               "interval": [job.start_step, job.target_step], "state": state.to_dict(),
               "accepted": tally.accepted, "ties": tally.ties, "attempt": attempt, "pid": os.getpid()}
    # Not synced to disk: after a power cut a damaged file is rejected by the loader (then recomputed).
    write_sealed_torch(path, payload, durable=False)


def load_shard(path: Path, job: ShardJob, shard: State) -> SavedShard | None:
    """The shard's checkpoint when it exists and belongs to this shard and interval; else None (one
    line on stderr when a file exists but cannot be trusted)."""
    if not path.exists():
        return None
    try:
        return _validated(path, job, shard)
    except CorruptFile as e:
        print(f"negd: {e.path}: {e.problem}; ignored, the shard recomputes its interval", file=sys.stderr)
        return None


def _validated(path: Path, job: ShardJob, shard: State) -> SavedShard:
    ckpt = load_torch(path, "")
    if not isinstance(ckpt, dict) or not set(KEYS) <= set(ckpt) or not isinstance(ckpt["state"], dict):
        raise CorruptFile(path, "is not a negd shard checkpoint", "")
    problem = digest_problem(ckpt)
    if problem is not None:  # a shard file from before checksums is recomputed too (minutes at most)
        raise CorruptFile(path, "has no checksum (written before checksums)" if problem == "no checksum"
                          else problem, "")
    expected = {"kind": job.kind, "arm": job.arm_index, "settings": job.settings,
                "interval": [job.start_step, job.target_step]}
    for key, value in expected.items():
        if ckpt[key] != value:
            what = "settings" if key == "settings" else f"{key} {short(ckpt[key])}, not {short(value)}"
            raise CorruptFile(path, f"belongs to another shard or run ({what})", "")
    state = checked_state(path, "shard", ckpt["state"])
    n = shard.n_realizations
    tallies = (ckpt["accepted"], ckpt["ties"])
    problems = []
    if not torch.equal(state.realization, shard.realization):
        problems.append("other realization ids")
    if state.params.shape != shard.params.shape or state.params.dtype != shard.params.dtype:
        problems.append(f"params {list(state.params.shape)}, expected {list(shard.params.shape)}")
    if state.seed != shard.seed or not job.start_step <= state.step <= job.target_step:
        problems.append(f"seed {state.seed} at step {state.step}")
    if not all(isinstance(t, torch.Tensor) and t.shape == (n,) and t.dtype == torch.int64 for t in tallies):
        problems.append("damaged tallies")
    if not (torch.isfinite(state.params).all() and torch.isfinite(state.loss).all()):
        problems.append("non-finite numbers")
    attempt = ckpt["attempt"]
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        problems.append(f"attempt {short(attempt)}")
    if problems:
        raise CorruptFile(path, f"does not fit its shard ({'; '.join(problems)})", "")
    return SavedShard(state, Tally(*tallies), attempt)


def write_progress(path: Path, step: int) -> None:
    """The shard's current step, for the driver's progress bar (tiny; replaced whole, not synced to
    disk: a lost record only delays the bar)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"step": step, "pid": os.getpid()}))
    os.replace(tmp, path)


def read_progress(path: Path) -> int | None:
    """The step of a progress record; None when there is none (yet) or it is unreadable."""
    try:
        step = json.loads(path.read_text()).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


# The names negd gives shard files (checkpoint_path, progress_path) and their temporary files
# (runfiles.atomic_write_bytes, write_progress): clean-up deletes these and nothing else.
_OWN_NAME = re.compile(r"\.?(ne|twin)-\d+-\d+\.(pt|progress)(\.[^/]*\.tmp)?")


def clear_shard_files(folder: Path) -> None:
    """The shard files of an arm (its interval is merged and saved in the arm checkpoint): only the
    files negd wrote, by name, and never through a symbolic link (a linked folder or file is left
    alone, as is any file of another name)."""
    if folder.is_symlink() or folder.parent.is_symlink() or not folder.is_dir():
        return
    for path in folder.iterdir():
        if _OWN_NAME.fullmatch(path.name) and not path.is_symlink() and path.is_file():
            path.unlink(missing_ok=True)
