"""Run-directory files, written atomically (temp file + ``os.replace``) or appended, all checksummed.

Layout (the contract with :mod:`negd.analysis`; see docs/experiments.md)::

    DIR/config.json              resolved configuration, arms, versions, run_kind "experiment"
    DIR/status.json              {"state": running|interrupted|complete, "arms_complete", "wall_seconds"}
    DIR/arms/<i>/snapshots.log   while the arm runs: one appended record per snapshot (its row's arrays
                                 as an npz, with length and SHA-256; negd.sealed)
    DIR/arms/<i>/snapshots.npz   once the arm is complete: every row in one npz (the log is then removed)
    DIR/arms/<i>/checkpoint.pt   NE and GD states to resume exactly
    DIR/arms/<i>/shards/         sharded runs: each shard's checkpoint inside an interval
                                 (negd.experiments.shards.files)

A snapshot appends one record instead of rewriting every row (10,001 snapshots: O(n), not O(n^2)).
A crash or Ctrl-C at any moment leaves every file either in its previous or its new version (the
log: at most a torn last record, dropped on reading), never half written. Every payload carries a
SHA-256 (negd.sealed) checked when it is read: a damaged or foreign file (truncated, a flipped bit,
binary, wrong structure) gives one :class:`NegdError` line naming the file and what to do, never a
traceback of torch, numpy or json, and never numbers that silently differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from negd.runfiles import (
    RECOMPUTE,
    CorruptFile,
    atomic_write_bytes,
    load_npz,
    load_npz_log,
    load_torch,
    read_json_object,
    short,
    write_json,
    write_sealed_torch,
)
from negd.sealed import (
    append_record,
    digest_problem,
    legacy_note,
    npz_bytes,
    record,
    seal_arrays,
)
from negd.validation import NegdError

__all__ = ["save_snapshots", "load_snapshots", "save_checkpoint", "load_checkpoint", "arm_dir",
           "write_status", "read_status", "SNAPSHOTS", "SNAPSHOT_LOG", "append_snapshot", "start_log",
           "load_rows", "consolidate", "rewrite_log", "rebuild_from_results"]

SNAPSHOTS, SNAPSHOT_LOG = "snapshots.npz", "snapshots.log"
# The keys of a checkpoint.pt written before checksums (read with a note; any other key: damaged).
LEGACY_CHECKPOINT_KEYS = frozenset({"ne", "gd", "rows", "wall_seconds", "arm", "settings"})


def arm_dir(run_dir: Path, index: int) -> Path:
    return run_dir / "arms" / str(index)


def save_snapshots(path: Path, arrays: dict[str, np.ndarray]) -> None:
    atomic_write_bytes(path, npz_bytes(seal_arrays(arrays)))


def load_snapshots(path: Path, advice: str = RECOMPUTE) -> dict[str, np.ndarray]:
    """The arrays of an arm's snapshots.npz, checksum verified (validated structure: see the runner's
    restore)."""
    return load_npz(path, advice)


# --------------------------------------------------------------------------- the snapshot log
def start_log(folder: Path) -> None:
    """An arm starts from its first row: no rows of an earlier attempt remain."""
    for name in (SNAPSHOT_LOG, SNAPSHOTS):
        (folder / name).unlink(missing_ok=True)


def append_snapshot(folder: Path, row_arrays: dict[str, np.ndarray]) -> None:
    """One snapshot row (arrays with a leading axis of 1) appended to the arm's log, synced to disk."""
    folder.mkdir(parents=True, exist_ok=True)
    append_record(folder / SNAPSHOT_LOG, npz_bytes(row_arrays))


def load_rows(folder: Path, advice: str = RECOMPUTE) -> dict[str, np.ndarray] | None:
    """The arm's snapshot arrays: snapshots.npz when it exists (a complete arm, or a run directory
    from before the log), else the rows of snapshots.log; None when there are none."""
    if (folder / SNAPSHOTS).exists():
        return load_snapshots(folder / SNAPSHOTS, advice)
    if (folder / SNAPSHOT_LOG).exists():
        return load_npz_log(folder / SNAPSHOT_LOG, advice)
    return None


def rewrite_log(folder: Path, rows: list[dict[str, np.ndarray]]) -> None:
    """The log holding exactly ``rows`` (on resume: the rows the checkpoint covers), replacing the log
    or the snapshots.npz that held them (written whole, then swapped in)."""
    atomic_write_bytes(folder / SNAPSHOT_LOG, b"".join(record(npz_bytes(row)) for row in rows))
    (folder / SNAPSHOTS).unlink(missing_ok=True)


def consolidate(folder: Path, arrays: dict[str, np.ndarray] | None = None) -> None:
    """A complete arm's rows (``arrays``, else those of its log) as one snapshots.npz; the log is then
    removed. Nothing when there is no log (already consolidated)."""
    log = folder / SNAPSHOT_LOG
    if not log.exists():
        return
    if arrays is not None or not (folder / SNAPSHOTS).exists():  # else a stop after the npz was written
        save_snapshots(folder / SNAPSHOTS, arrays if arrays is not None else load_npz_log(log, RECOMPUTE))
    log.unlink()


# --------------------------------------------------------------------------- checkpoints and status
def save_checkpoint(path: Path, payload: dict) -> None:
    write_sealed_torch(path, payload)


def load_checkpoint(path: Path, advice: str = RECOMPUTE) -> dict:
    """A checkpoint.pt as a dict with ``ne`` and ``gd`` state dicts, ``rows`` and ``wall_seconds``;
    CorruptFile when it is unreadable, fails its SHA-256 or has another structure (``weights_only``:
    no code runs)."""
    payload = load_torch(path, advice)
    if not isinstance(payload, dict) or not {"ne", "gd", "rows", "wall_seconds"} <= set(payload):
        raise CorruptFile(path, "is not a negd checkpoint (ne, gd, rows, wall_seconds missing)", advice)
    problem = digest_problem(payload, LEGACY_CHECKPOINT_KEYS)
    if problem == "no checksum":
        legacy_note(path)
    elif problem is not None:
        raise CorruptFile(path, problem, advice)
    if not all(isinstance(payload[k], dict) for k in ("ne", "gd")):
        raise CorruptFile(path, "is not a negd checkpoint (ne and gd must be state dicts)", advice)
    rows, wall = payload["rows"], payload["wall_seconds"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise CorruptFile(path, f"has rows = {short(rows)}, not an integer >= 1", advice)
    if isinstance(wall, bool) or not isinstance(wall, int | float) or not wall >= 0:
        raise CorruptFile(path, f"has wall_seconds = {short(wall)}, not a number >= 0", advice)
    return payload


def write_status(run_dir: Path, state: str, arms_complete: list[int], wall_seconds: float,
                 report: str | None = None) -> None:
    """``report``: "pending" while report.md is being built, "written", "failed" or "interrupted"."""
    status = {"state": state, "arms_complete": sorted(arms_complete), "wall_seconds": wall_seconds}
    if report is not None:
        status["report"] = report
    write_json(run_dir / "status.json", status)


def read_status(run_dir: Path) -> dict:
    return read_json_object(run_dir / "status.json")


def rebuild_from_results(run_dir: Path, what: str, experiment_type: type,
                         write: Callable[[Any, dict, dict], Path]) -> Path:
    """``write(experiment, snapshots, summary)`` for a finished run of minutes (classification,
    variants) whose results are its checksummed snapshots.json and summary.json, and whose
    config.json holds the fields of ``experiment_type`` (``negd report``: nothing is recomputed or
    replaced by less). One line when the run is unfinished (``what`` names it) or its files do not
    fit each other."""
    config = read_json_object(run_dir / "config.json")
    if not (run_dir / "snapshots.json").exists() or not (run_dir / "summary.json").exists():
        raise NegdError(f"report: {str(run_dir)!r} is an unfinished {what} run (no snapshots.json or "
                        "summary.json): nothing to report; run it again")
    snapshots = read_json_object(run_dir / "snapshots.json", sealed=True)  # checksum verified
    summary = read_json_object(run_dir / "summary.json", sealed=True)
    try:
        experiment = experiment_type(**{f.name: config[f.name] for f in fields(experiment_type)
                                        if f.name in config})
        return write(experiment, snapshots, summary)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise CorruptFile(run_dir / "summary.json", f"does not fit its run ({type(e).__name__}: "
                          f"{short(str(e))})", "restore the run directory from a copy") from None
