"""The machine's arithmetic limits, measured by a few lines of C compiled with the kernels.

``negd bench`` and ``python -m negd.bench.compare`` state every workload's speed as a fraction of
what one core can do at all, not of another library's speed (``torch.mm`` on the same products
reaches about 0.45 of it on an AVX2 core, so a "matmul limit" taken from it is no limit):

- :func:`fma_peak`: FLOP per CPU-second of one core running ten independent chains of vector fused
  multiply-adds held in registers (2 FLOP per lane and FMA), in float32 or float64;
- :func:`tanh_throughput`: the kernel's own tanh (the one its hidden layers use), evaluations per
  CPU-second of one core over an L1-resident array.

A forward pass of F multiply-add FLOPs and T tanh evaluations cannot take less than
``F / fma_peak + T * (cost of one tanh beyond its FMAs)``; :func:`step_limit` gives the simpler
bound ``1 / (F / fma_peak + T / tanh_throughput)`` (the tanh's own FMAs share the same ports, so the
two costs add) in realization-steps per CPU-second.
"""

from __future__ import annotations

import torch

from negd.kernels.build import load_library

__all__ = ["fma_peak", "tanh_throughput", "step_limit"]

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _probe(name: str, dtype: torch.dtype, seconds: float) -> float:
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    if dtype not in _SUFFIX:
        raise ValueError(f"dtype: must be torch.float32 or torch.float64, got {dtype}")
    return float(getattr(lib, f"negd_{name}_{_SUFFIX[dtype]}")(float(seconds)))


def fma_peak(dtype: torch.dtype = torch.float32, seconds: float = 0.2) -> float:
    """One core's FMA peak: FLOP per CPU-second of the calling thread (best of 3 bursts)."""
    return max(_probe("fma_peak", dtype, seconds / 3) for _ in range(3))


def tanh_throughput(seconds: float = 0.2, dtype: torch.dtype = torch.float32) -> float:
    """The kernel's tanh: evaluations per CPU-second of the calling thread (best of 3 bursts)."""
    return max(_probe("tanh_throughput", dtype, seconds / 3) for _ in range(3))


def step_limit(flops: float, tanhs: float, peak: float, tanh_rate: float) -> float:
    """Realization-steps per CPU-second one core can reach for a step of ``flops`` multiply-add
    FLOPs and ``tanhs`` tanh evaluations, given the measured ``peak`` and ``tanh_rate``."""
    return 1.0 / (flops / peak + tanhs / tanh_rate)
