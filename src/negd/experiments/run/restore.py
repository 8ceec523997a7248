"""Restore an arm of a run directory for ``--resume``, validating every file against the arm.

An arm's state on disk is ``checkpoint.pt`` (NE and twin states after ``rows`` snapshot rows)
and ``snapshots.npz`` (the rows; it may hold more rows than the checkpoint, never fewer, because
it is written first). Before a byte of it is used, :func:`restore_arm` checks that both files
are readable, that the checkpoint belongs to this arm (its index, its settings, its step
schedule, its ensemble sizes) and that the snapshots cover the checkpoint's rows. A file that
fails is a :class:`CorruptFile` (the runner then recomputes the arm from the start: the
counter-based random numbers make that identical to the lost work); a checkpoint computed with
other settings than config.json's means config.json was edited, and is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from negd.experiments.config.schema import Arm
from negd.experiments.run.provenance import differences
from negd.experiments.run.store import load_checkpoint, load_snapshots
from negd.runfiles import RECOMPUTE, CorruptFile, short
from negd.state import State
from negd.validation import NegdError

__all__ = ["Restored", "ArmShape", "restore_arm", "unstack_rows", "checked_state"]


@dataclass(frozen=True)
class ArmShape:
    """What an arm's files must look like (from the configuration)."""

    index: int
    arm: Arm
    n_params: int
    n_traj: int
    seed: int
    twin_realizations: int
    ensemble_twin: bool
    settings: dict


@dataclass
class Restored:
    ne: State
    gd: State
    rows: list[dict]
    wall: float


def unstack_rows(arrays: dict[str, np.ndarray], n_rows: int) -> list[dict]:
    """Rows back from a snapshots.npz, keeping only the first ``n_rows`` (those the checkpoint covers)."""
    keys = [k for k in arrays if k != "trajectory_ids"]
    return [{k: (arrays[k][i].item() if arrays[k].ndim == 1 else arrays[k][i]) for k in keys}
            for i in range(n_rows)]


def checked_state(path: Path, name: str, d: dict) -> State:
    """``d`` as a State with consistent tensors; CorruptFile naming ``path`` otherwise."""
    try:
        state = State.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptFile(path, f"its {name} state is damaged ({type(e).__name__}: {short(str(e))})",
                          RECOMPUTE) from None
    tensors = (state.params, state.loss, state.realization, state.accepted, *state.extras.values())
    if not all(isinstance(t, Tensor) for t in tensors) or state.params.dim() != 2:
        raise CorruptFile(path, f"its {name} state is damaged (tensors missing)", RECOMPUTE)
    r = state.params.shape[0]
    if any(t.shape[:1] != (r,) for t in tensors[1:]) or not state.params.is_floating_point():
        raise CorruptFile(path, f"its {name} state is damaged (inconsistent shapes)", RECOMPUTE)
    return state


def _check_owner(path: Path, ckpt: dict, shape: ArmShape) -> None:
    """The checkpoint is this arm's, computed with config.json's settings (runs before this check
    existed have neither entry)."""
    owner = ckpt.get("arm")
    if owner is not None and owner != shape.index:
        raise CorruptFile(path, f"is the checkpoint of arm {short(owner)}, not of arm {shape.index}",
                          RECOMPUTE)
    if "settings" not in ckpt:
        return
    try:
        recorded = json.loads(ckpt["settings"])
    except (TypeError, ValueError):
        raise CorruptFile(path, "has damaged settings", RECOMPUTE) from None
    if not isinstance(recorded, dict):
        raise CorruptFile(path, "has damaged settings", RECOMPUTE)
    changed = differences(recorded, shape.settings, recorded_only=True)
    if changed:
        raise NegdError(f"{path.parent.parent.parent / 'config.json'}: differs from the settings arm "
                        f"{shape.index} was computed with ({'; '.join(changed[:3])}); config.json was edited "
                        f"after the run started: restore it, or start a new run")


def _check_states(path: Path, ne: State, gd: State, rows: int, shape: ArmShape) -> None:
    arm = shape.arm
    expected_step = arm.snapshots[rows - 1]
    problems = []
    if tuple(ne.params.shape) != (arm.realizations, shape.n_params):
        problems.append(f"NE params {list(ne.params.shape)}, expected [{arm.realizations}, {shape.n_params}]")
    if tuple(gd.params.shape) != (shape.twin_realizations, shape.n_params):
        problems.append(f"twin params {list(gd.params.shape)}, expected "
                        f"[{shape.twin_realizations}, {shape.n_params}]")
    if ne.step != expected_step or gd.step != arm.gd_step_of(expected_step):
        problems.append(f"steps {ne.step}/{gd.step}, expected {expected_step}/"
                        f"{arm.gd_step_of(expected_step)} after {rows} rows")
    if ne.seed != shape.seed:
        problems.append(f"seed {ne.seed}, expected {shape.seed}")
    if not (torch.isfinite(ne.params).all() and torch.isfinite(gd.params).all()):
        problems.append("non-finite parameters")
    if problems:
        raise CorruptFile(path, f"does not belong to arm {shape.index} ({'; '.join(problems)})", RECOMPUTE)


def _check_snapshots(path: Path, arrays: dict[str, np.ndarray], rows: int, shape: ArmShape) -> None:
    needed = {"ne_step": (), "gd_step": (), "param_mean": (shape.n_params,), "param_var": (shape.n_params,),
              "gd_params": (shape.n_params,), "trajectories": (shape.n_traj, shape.n_params)}
    if shape.ensemble_twin:
        needed["gd_param_var"] = (shape.n_params,)
    for key, tail in needed.items():
        if key not in arrays:
            raise CorruptFile(path, f"lacks {key}", RECOMPUTE)
        a = arrays[key]
        if a.ndim != 1 + len(tail) or a.shape[0] < rows or tuple(a.shape[1:]) != tail:
            raise CorruptFile(path, f"has {key} of shape {list(a.shape)}, which does not cover the "
                              f"checkpoint's {rows} rows of {list(tail)}", RECOMPUTE)
    if [int(s) for s in arrays["ne_step"][:rows]] != list(shape.arm.snapshots[:rows]):
        raise CorruptFile(path, f"holds the snapshots of other NE steps than arm {shape.index}", RECOMPUTE)


def restore_arm(folder: Path, shape: ArmShape, device: torch.device) -> Restored | None:
    """The arm's saved state, None when it has no checkpoint yet; CorruptFile / NegdError as above."""
    ckpt_path, snap_path = folder / "checkpoint.pt", folder / "snapshots.npz"
    if not ckpt_path.exists():
        return None
    ckpt = load_checkpoint(ckpt_path)
    _check_owner(ckpt_path, ckpt, shape)
    rows = ckpt["rows"]
    if rows > len(shape.arm.snapshots):
        raise CorruptFile(ckpt_path, f"has {rows} rows, the arm has only {len(shape.arm.snapshots)}",
                          RECOMPUTE)
    ne, gd = checked_state(ckpt_path, "NE", ckpt["ne"]), checked_state(ckpt_path, "twin", ckpt["gd"])
    _check_states(ckpt_path, ne, gd, rows, shape)
    arrays = load_snapshots(snap_path)
    _check_snapshots(snap_path, arrays, rows, shape)
    return Restored(ne.to(device), gd.to(device), unstack_rows(arrays, rows), float(ckpt["wall_seconds"]))
