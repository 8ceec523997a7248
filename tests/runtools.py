"""Helpers of the fault-injection tests: tiny configurations, `negd` subprocesses, run comparison."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import negd

SRC = str(Path(negd.__file__).resolve().parents[1])

# About 1 s of computation in two arms (plus ~2 s start-up and ~3 s report in a subprocess).
FAULT_YAML = """
network: {depth: 1, width: 8, output_bias: false}
init: {kind: paper, sigma0: 0.1}
beta: inf
alpha: 1e-3
lambda: 1
realizations: 16
t_final: 0.4
n_snapshots: 9
trajectories: 2
seed: 3
scan: {factors: [2], realizations: 8}
"""


def fault_yaml(kernels: bool) -> str:
    """FAULT_YAML, shortened for the torch path (about 50x slower per step than the kernel here)."""
    if kernels:
        return FAULT_YAML
    return FAULT_YAML.replace("t_final: 0.4", "t_final: 0.08").replace("n_snapshots: 9", "n_snapshots: 5")


def negd_env(kernels: bool = True, **extra: str) -> dict:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)
    if kernels:
        env.pop("NEGD_DISABLE_KERNELS", None)
    else:
        env["NEGD_DISABLE_KERNELS"] = "1"
    return env


def negd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "negd.cli", *args]


def start(args: list[str], env: dict, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(negd_cmd(*args, "--no-progress"), env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(args: list[str], env: dict, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(negd_cmd(*args, "--no-progress"), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def arm_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array of every arm's snapshots.npz, keyed "arm/name", without wall-clock times (nor the
    checksum, which covers them)."""
    out = {}
    for folder in sorted((Path(run_dir) / "arms").iterdir()):
        with np.load(folder / "snapshots.npz") as z:
            out.update({f"{folder.name}/{k}": z[k] for k in z.files if k not in ("wall_seconds", "sha256")})
    return out


def assert_same_numbers(a: Path, b: Path) -> None:
    x, y = arm_arrays(a), arm_arrays(b)
    assert x.keys() == y.keys()
    for key in x:
        np.testing.assert_array_equal(x[key], y[key], err_msg=key)

# A run of seconds (1-4-1 net, 4 realizations, 3 snapshots): the set-up of the run-kind and sweep tests.
TINY_YAML = """
network: {depth: 1, width: 4, output_bias: false}
init: {kind: paper, sigma0: 0.1}
beta: inf
alpha: 1e-3
lambda: 1
realizations: 4
t_final: 0.02
n_snapshots: 3
trajectories: 2
seed: 5
"""
