"""``python -m negd.bench.kernel_rates [shallow|deep|wide|shallow64|deep64|tanh|tanh64|bmm ...]``.

Throughput of the fused kernel: realization-steps per second of the paper's three set-ups with
float32 parameters (and, as ``shallow64``/``deep64``, float64 parameters), the kernel's tanh
alone and the float32 ``torch.bmm`` yardstick for the deep net's shapes. Each line gives the wall-clock
rate and the rate per CPU-second times the thread count (the wall rate of an otherwise idle
machine; both agree when nothing else runs).
"""

from __future__ import annotations

import math
import sys
import time

import torch

from negd import kernels
from negd.engine import fused_step_fn
from negd.ensemble import MLPLoss
from negd.models import MLPSpec, paper_init
from negd.rules import Neuroevolution
from negd.tasks import get_task


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _report(name: str, work: float, unit: str, wall: float, cpu: float) -> None:
    threads = torch.get_num_threads()
    print(f"{name:8s} {work / wall:14,.0f} {unit} (wall)   {threads * work / cpu:14,.0f} "
          f"{unit} (per {threads} CPU-s)", flush=True)


def bench_rule(name: str, spec: MLPSpec, task: str, realizations: int, sigma: float, beta: float,
               steps: int, dtype: torch.dtype = torch.float32) -> None:
    data = get_task(task)
    loss_fn = MLPLoss(spec, data.inputs, data.targets, backend="c")
    rule = Neuroevolution(sigma, beta)
    start = paper_init(spec.n_params, 0.3, seed=1).to(dtype)
    state = rule.init(start, loss_fn, realizations=realizations)
    run = fused_step_fn(rule, state, loss_fn)
    run(state, 1)  # warm up threads and caches
    wall, cpu = _timed(lambda: run(state, steps))
    _report(name, realizations * steps, "realization-steps/s", wall, cpu)


def bench_tanh(dtype: torch.dtype = torch.float32) -> None:
    x = torch.linspace(-4, 4, 1 << 15, dtype=dtype)  # fits in L2: measures arithmetic, not memory
    time.sleep(0.5)  # let torch's OpenMP workers stop spinning: their CPU time would count here
    wall, cpu = _timed(lambda: [kernels.tanh(x) for _ in range(2000)])
    name = "tanh" if dtype == torch.float32 else "tanh64"
    print(f"{name:8s} {2000 * x.numel() / cpu / 1e9:.2f} G tanh/s per CPU-s (one thread, load + store, "
          "one ctypes call per 32k)")


def bench_bmm() -> None:
    spec = MLPSpec(8, 32)
    r, p, w = 100, 1001, spec.width
    h, weights, out = torch.randn(r, p, w), torch.randn(r, w, w), torch.empty(r, p, w)
    torch.bmm(h, weights, out=out)
    reps = 50
    wall, cpu = _timed(lambda: [torch.bmm(h, weights, out=out) for _ in range(reps)])
    flops = reps * 2.0 * r * p * w * w
    threads = torch.get_num_threads()
    per_step = 2.0 * p * (w + (spec.depth - 1) * w * w + w)
    print(f"bmm      {flops / wall / 1e9:.1f} GFLOP/s (wall)   {threads * flops / cpu / 1e9:.1f} GFLOP/s "
          f"(per {threads} CPU-s) = {threads * flops / cpu / per_step:,.0f} deep realization-steps/s")


def main(argv: list[str]) -> None:
    if not kernels.available():
        raise SystemExit("negd kernels unavailable (see warnings)")
    which = argv or ["shallow", "shallow64", "deep", "deep64", "wide", "tanh", "tanh64", "bmm"]
    for suffix, dtype in (("", torch.float32), ("64", torch.float64)):
        if "shallow" + suffix in which:
            bench_rule("shallow" + suffix, MLPSpec(1, 30, output_bias=False), "sin2pi", 1000, 0.01, math.inf,
                       300, dtype)
        if "deep" + suffix in which:
            bench_rule("deep" + suffix, MLPSpec(8, 32), "sinpi", 100, 1e-3, math.inf, 100, dtype)
        if "tanh" + suffix in which:
            bench_tanh(dtype)
    if "wide" in which:
        bench_rule("wide", MLPSpec(1, 256), "sin2pi", 1000, 0.01, 1000.0, 30)
    if "bmm" in which:
        bench_bmm()


if __name__ == "__main__":
    main(sys.argv[1:])
