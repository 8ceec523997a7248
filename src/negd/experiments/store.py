"""Run-directory files, written atomically (temp file + ``os.replace``).

Layout (the contract with :mod:`negd.analysis`; see docs/experiments.md)::

    DIR/config.json              resolved configuration, arms, versions
    DIR/status.json              {"state": running|interrupted|complete, "arms_complete", "wall_seconds"}
    DIR/arms/<i>/snapshots.npz   per-snapshot arrays (rewritten at every snapshot)
    DIR/arms/<i>/checkpoint.pt   NE and GD states to resume exactly

A crash or Ctrl-C at any moment leaves every file either in its previous or its new version,
never half written.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from negd.validation import NegdError

__all__ = ["atomic_write_bytes", "write_json", "read_json", "save_snapshots", "load_snapshots",
           "save_checkpoint", "load_checkpoint", "arm_dir", "write_status", "read_status"]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a temp file behind, keep the old version.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NegdError(f"run directory: missing {path.name} in {str(path.parent)!r}") from None
    except json.JSONDecodeError as e:
        raise NegdError(f"run directory: {path} is not valid JSON ({e})") from None


def arm_dir(run_dir: Path, index: int) -> Path:
    return run_dir / "arms" / str(index)


def save_snapshots(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_snapshots(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def save_checkpoint(path: Path, payload: dict) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise NegdError(f"--resume: missing checkpoint {path}") from None


def write_status(run_dir: Path, state: str, arms_complete: list[int], wall_seconds: float) -> None:
    write_json(run_dir / "status.json", {"state": state, "arms_complete": sorted(arms_complete),
                                         "wall_seconds": wall_seconds})


def read_status(run_dir: Path) -> dict:
    return read_json(run_dir / "status.json")
