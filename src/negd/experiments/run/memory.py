"""Memory a run needs, estimated before it starts, against the memory this machine has free.

Issue 19, class 4: sizes that pass validation (realizations <= 1e8, width <= 1e5) but cannot be
allocated ended in an allocator traceback, after the run directory was written, so that its resume
failed the same way. :func:`check_memory` refuses such a run in one line before anything is written
(and a resume before anything is changed), naming the sizes that make up the estimate.

The estimate is the peak of the largest arm (arms run one after the other), with the snapshot rows of
all arms (a resume loads every arm's rows first):

* the NE ensemble, R x N values: the parameters, the proposal and the kept copy in the run's dtype
  (3 x itemsize), the float32 normals of a step (4 bytes), and the float64 copies the snapshot
  statistics make (mean, variance, the covariance SE of Delta: 3 x 8 bytes);
* the twin ensemble, R_twin x N: parameters, gradient, noise and proposal (4 x itemsize) and the
  same float64 statistics (3 x 8); the mean-field twin (M proposals per run) also holds M/2 float64
  directions and per-pair displacements per run (2 x 8 bytes x M/2) and one chunk of at most 256
  proposals per run in the run's dtype and float64 (2 x itemsize + 2 x 8);
* the snapshot rows, n_snapshots x N: param_mean, param_var, gd_params, gd_param_var (4 x 8 bytes)
  and the trajectories (n_traj x 4 bytes), held as rows, stacked for each save and serialized
  (3 copies);
* a fixed allowance (:data:`BASE_BYTES`) for torch, the data and the loss's chunked work space.

It is an estimate, not a bound: it refuses what cannot fit, not what might be tight.
``NEGD_SKIP_MEMORY_CHECK=1`` skips the check (e.g. on a machine whose swap or overcommit you trust).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from negd.analysis.rundir import ENSEMBLE_TWINS
from negd.dtypes import DTYPES
from negd.experiments.config.schema import Arm, ExperimentConfig
from negd.validation import NegdError

__all__ = ["MemoryEstimate", "estimate_memory", "available_bytes", "check_memory", "BASE_BYTES"]

BASE_BYTES = 512 << 20


@dataclass(frozen=True)
class MemoryEstimate:
    total: int  # bytes
    arm: int  # index of the largest arm
    realizations: int
    n_params: int
    itemsize: int
    twin_realizations: int
    snapshot_bytes: int


def estimate_memory(config: ExperimentConfig, arms: list[Arm]) -> MemoryEstimate:
    """The peak memory of a run of ``config`` (module docstring), in bytes; allocates nothing (the
    network's initial parameters alone may be what does not fit)."""
    n_params = config.network.spec().n_params
    twin_realizations = int(config.twin_realizations) if config.twin in ENSEMBLE_TWINS else 1
    itemsize = torch.empty((), dtype=DTYPES[config.dtype]).element_size()
    n_traj = config.trajectories
    per_row = n_params * (4 * 8 + n_traj * 4)
    snapshots = 3 * sum(len(a.snapshots) for a in arms) * per_row
    twin = twin_realizations * n_params * (4 * itemsize + 3 * 8)
    if config.twin == "mean-field":
        pairs = int(config.twin_proposals) // 2
        twin += twin_realizations * n_params * (2 * 8 * pairs + min(pairs, 256) * (2 * itemsize + 2 * 8))
    working = [a.realizations * n_params * (3 * itemsize + 4 + 3 * 8) for a in arms]
    largest = max(range(len(arms)), key=working.__getitem__)
    total = BASE_BYTES + working[largest] + twin + snapshots
    return MemoryEstimate(total, largest, arms[largest].realizations, n_params, itemsize,
                          twin_realizations, snapshots)


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_bytes() -> int | None:
    """Memory this process can still take: MemAvailable, lowered by a cgroup limit; None if unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        found.append(max(0, limit - used))
    return min(found) if found else None


def _gb(n: int) -> str:
    return f"{n / 1e9:.3g} GB"


def check_memory(config: ExperimentConfig, arms: list[Arm], available: int | None = None) -> MemoryEstimate:
    """Refuse, in one line, a run whose estimated peak exceeds the free memory (module docstring)."""
    estimate = estimate_memory(config, arms)
    if os.environ.get("NEGD_SKIP_MEMORY_CHECK", "").strip() not in ("", "0"):
        return estimate
    free = available_bytes() if available is None else available
    if free is not None and estimate.total > free:
        e = estimate
        # name what to change: the network if one realization with two snapshots does not fit, else
        # whichever of the ensemble and the snapshots dominates
        smallest = BASE_BYTES + e.n_params * (3 * e.itemsize + 4 + 3 * 8 + 2 * 3 * (4 * 8 + 4))
        field = ("network" if smallest > free else
                 "n_snapshots" if 2 * e.snapshot_bytes > e.total else "realizations")
        raise NegdError(f"{field}: this run needs about {_gb(e.total)} of memory, more than the "
                        f"{_gb(free)} free here (arm {e.arm}: {e.realizations} realizations x {e.n_params} "
                        f"parameters x {e.itemsize}-byte {config.dtype} with their copies, a twin of "
                        f"{e.twin_realizations}, {_gb(e.snapshot_bytes)} of snapshots); use fewer "
                        f"realizations or snapshots, or a smaller network (NEGD_SKIP_MEMORY_CHECK=1 "
                        f"skips this check)")
    return estimate
