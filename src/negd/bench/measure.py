"""Timing, machine limits and machine description for ``negd bench``.

Throughput is in realization-steps per second: R realizations each taking one mutation step
(one loss evaluation) count R. Every measurement warms up first (compilation and JIT time are
reported separately, not counted), calibrates the number of steps to fill ``seconds``, and
reports the median over ``repeats`` timed runs.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

__all__ = ["time_peer", "tanh_rate", "matmul_rate", "machine_info", "peak_rss_mb"]


def peak_rss_mb() -> float:
    """High-water mark of this process's resident set (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_peer(peer, seconds: float, repeats: int, max_steps: int = 1 << 30) -> dict:
    """Warm up, calibrate, and time ``peer.run``; returns rate (median), all rates, warmup time."""
    q = peer.quantum
    t0 = time.perf_counter()
    peer.run(q)  # first call: compilation / JIT / allocator warm-up
    warmup = time.perf_counter() - t0
    # Calibrate: double the steps until one run fills a quarter of the budget.
    steps, elapsed = q, 0.0
    while True:
        t0 = time.perf_counter()
        peer.run(steps)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds / 4 or steps >= max_steps:
            break
        steps *= 2
    steps = max(q, min(max_steps, int(steps * seconds / max(elapsed, 1e-9)) // q * q))
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        peer.run(steps)
        work = steps * peer.realization_steps_per_step
        rates.append(work / (time.perf_counter() - t0))
        cpu_rates.append(work / max(time.process_time() - c0, 1e-9))
    # per CPU-second of this process (all its threads): what the run costs, whatever else the
    # machine runs; with one thread, the rate an idle core gives
    return {"rate": statistics.median(rates), "rates": rates, "cpu_rate": statistics.median(cpu_rates),
            "cpu_rates": cpu_rates, "steps": steps, "warmup_s": warmup}


def _best_rate(fn, work: float, seconds: float, device: str = "cpu") -> float:
    """Largest work/s of ``fn`` over short timed bursts filling ``seconds``."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    fn()
    sync()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(8):
            fn()
        sync()
        best = max(best, 8 * work / (time.perf_counter() - t0))
    return best


def tanh_rate(seconds: float = 1.0, device: str = "cpu") -> dict:
    """float32 tanh evaluations per second: the fastest of torch.tanh on cache-resident chunks
    (as torch runs it: all threads above its parallel grain size) and, when the C kernel module
    is usable, its own tanh (``kernels.tanh_throughput(seconds)`` if offered, else timing
    ``kernels.tanh`` the same way)."""
    from negd import kernels

    sizes = (4096, 32768, 262144, 1 << 20, 1 << 22)
    candidates = {"torch_tanh": lambda x, out: torch.tanh(x, out=out),
                  "torch_tanh_alloc": lambda x, out: torch.tanh(x)}
    kernel_ok = device == "cpu" and getattr(kernels, "available", lambda: False)()
    if kernel_ok and getattr(kernels, "tanh_throughput", None) is None and hasattr(kernels, "tanh"):
        candidates["kernel_tanh"] = lambda x, out: kernels.tanh(x)
    budget = seconds / (len(sizes) * len(candidates))
    result: dict = {}
    for name, fn in candidates.items():
        by_size = {}
        for size in sizes:
            x = torch.rand(size, device=device) * 4 - 2
            out = torch.empty_like(x)
            by_size[size] = _best_rate(lambda fn=fn, x=x, out=out: fn(x, out), size, budget, device)
        result[name] = max(by_size.values())
        result[name + "_by_size"] = by_size
    if kernel_ok and getattr(kernels, "tanh_throughput", None) is not None:
        try:
            result["kernel_tanh"] = float(kernels.tanh_throughput(seconds / 2))
        except Exception as err:  # a broken optional benchmark must not sink the run
            result["kernel_tanh_error"] = repr(err)
    result["rate"] = max(v for k, v in result.items() if k in ("torch_tanh", "torch_tanh_alloc",
                                                                 "kernel_tanh"))
    return result


def matmul_rate(points: int, width: int, seconds: float = 1.0, device: str = "cpu") -> dict:
    """float32 FLOP/s of the deep network's products [points, width] x [width, width]: the best of
    ``torch.bmm`` over B independent matrices and of one ``torch.mm`` of B stacked inputs (the
    same arithmetic with a shared weight, the most favourable layout a GEMM library gets)."""
    result: dict = {}
    budget = seconds / 6
    for batch in (16, 64, 256):
        a = torch.rand(batch, points, width, device=device)
        b = torch.rand(batch, width, width, device=device)
        out = torch.empty(batch, points, width, device=device)
        work = 2.0 * batch * points * width * width
        result[f"bmm_B{batch}"] = _best_rate(lambda a=a, b=b, out=out: torch.bmm(a, b, out=out), work,
                                             budget, device)
        a2, out2 = a.reshape(batch * points, width), out.reshape(batch * points, width)
        result[f"mm_B{batch}"] = _best_rate(lambda a=a2, b=b[0], out=out2: torch.mm(a, b, out=out), work,
                                            budget, device)
    return {"rate": max(result.values()), "by_shape": result}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[3]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return out.stdout.strip() + ("+dirty" if dirty else "")


def machine_info(device: str) -> dict:
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "negd": _version("negd"),
        "git_commit": _git_commit(),
        "device": device,
        # Other processes distort timings on a small machine: record how busy it was.
        "load_average_1_5_15": list(os.getloadavg()),
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info
