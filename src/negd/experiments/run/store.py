"""Run-directory files, written atomically (temp file + ``os.replace``).

Layout (the contract with :mod:`negd.analysis`; see docs/experiments.md)::

    DIR/config.json              resolved configuration, arms, versions
    DIR/status.json              {"state": running|interrupted|complete, "arms_complete", "wall_seconds"}
    DIR/arms/<i>/snapshots.npz   per-snapshot arrays (rewritten at every snapshot)
    DIR/arms/<i>/checkpoint.pt   NE and GD states to resume exactly
    DIR/arms/<i>/shards/         sharded runs: each shard's checkpoint inside an interval
                                 (negd.experiments.shards.files)

A crash or Ctrl-C at any moment leaves every file either in its previous or its new version,
never half written. Every file is read back through one validating loader here: a damaged or
foreign file (truncated, binary, wrong structure) gives one :class:`NegdError` line naming the
file and what to do, never a traceback of torch, numpy or json.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from negd.runfiles import (
    RECOMPUTE,
    CorruptFile,
    atomic_write_bytes,
    load_npz,
    read_json_object,
    short,
    write_json,
)

__all__ = ["save_snapshots", "load_snapshots", "save_checkpoint", "load_checkpoint", "arm_dir",
           "write_status", "read_status"]


def arm_dir(run_dir: Path, index: int) -> Path:
    return run_dir / "arms" / str(index)


def save_snapshots(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_snapshots(path: Path, advice: str = RECOMPUTE) -> dict[str, np.ndarray]:
    """The arrays of an arm's snapshots.npz (validated structure: see the runner's restore)."""
    return load_npz(path, advice)


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, advice: str = RECOMPUTE) -> dict:
    """A checkpoint.pt as a dict with ``ne`` and ``gd`` state dicts, ``rows`` and ``wall_seconds``;
    CorruptFile when it is unreadable or has another structure (``weights_only``: no code runs)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CorruptFile(path, "is missing", advice) from None
    except Exception as e:  # PytorchStreamReader errors, EOFError, UnpicklingError, ...
        raise CorruptFile(path, f"is unreadable ({type(e).__name__}: {short(str(e))})", advice) from None
    if not isinstance(payload, dict) or not {"ne", "gd", "rows", "wall_seconds"} <= set(payload):
        raise CorruptFile(path, "is not a negd checkpoint (ne, gd, rows, wall_seconds missing)", advice)
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
