"""Shared fixtures: small regression problems and the authors' reference data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference" / "mc-gd-correspondence"


@pytest.fixture
def reference_dir() -> Path:
    """The authors' published trajectories (read-only); tests using it skip when absent."""
    if not (REFERENCE_DIR / "gd_traj.npz").is_file():
        pytest.skip(f"reference data of Whitelam et al. not found at {REFERENCE_DIR}")
    return REFERENCE_DIR


@pytest.fixture
def small_regression() -> tuple[torch.Tensor, torch.Tensor]:
    """40 points of sin(pi x) on [-1, 1], float32, shapes [40, 1]."""
    x = torch.linspace(-1, 1, 40, dtype=torch.float64)[:, None]
    return x.float(), torch.sin(torch.pi * x).float()


@pytest.fixture
def single_thread():
    """Run a test's many tiny tensor operations on one intra-op thread, then restore.

    For R = 1 or small networks each operation is microseconds long: a second thread adds only
    synchronization, and on a machine whose cores are busy it makes steps ~8x slower (measured:
    16 ms vs 2 ms per normalized-gradient step of the 1-40-1 net under load).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
