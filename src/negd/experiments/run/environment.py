"""What a run records about, and sets in, the process it runs in: versions and the thread count of
one-network work. Shared by every experiment (negd.experiments.run.runner, classification, variants).
"""

from __future__ import annotations

import platform
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

__all__ = ["versions", "one_thread"]


def versions() -> dict:
    """negd, torch, numpy, python, platform and CPU of this process: recorded with every run."""
    from negd.version import __version__

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"negd": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu}


@contextmanager
def one_thread():
    """Run the one-network work (twin, regime check) on one torch thread.

    Its tensors are tiny ([P, width] for R = 1): a second thread costs more in synchronization
    than it saves (measured ~7x more CPU time per GD step on 2 cores), and a fixed thread count
    keeps its floating-point reductions, hence its numbers, the same on every run.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
