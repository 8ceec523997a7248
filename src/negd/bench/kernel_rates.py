"""``python -m negd.bench.kernel_rates [shallow|deep|wide|shallow64|deep64|tanh|tanh64|bmm|digits ...]``.

Throughput of the fused kernel: realization-steps per second of the paper's three set-ups with
float32 parameters (and, as ``shallow64``/``deep64``, float64 parameters), the kernel's tanh
alone and the float32 ``torch.bmm`` yardstick for the deep net's shapes. Each line gives the wall-clock
rate and the rate per CPU-second times the thread count (the wall rate of an otherwise idle
machine; both agree when nothing else runs).

``digits``: the digits-mlp workload of ``negd bench`` (64-32-10 tanh, cross-entropy, 1347 images)
per CPU-second, on one thread so that no idle OpenMP worker's spinning is counted: the fused
kernel at R = 1, 32, 256, the generic path (``ModuleLoss`` with a callable loss, the bench's
``generic`` peer) at R = 32, the machine's limit (one core's FMA peak and the kernel's tanh
throughput, :mod:`negd.kernels.limits`), torch's rate on the same products (float32 ``torch.bmm`` of
[B, 1347, 32] x [B, 32, 32], a peer) and the ratios; robust to other processes on the machine.
"""

from __future__ import annotations

import math
import sys
import time

import torch

from negd import kernels
from negd.engine import fused_step_fn
from negd.kernels import limits
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
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


def _cpu_rate(fn, work: float, min_cpu: float = 1.0) -> float:
    """``work`` per CPU-second of ``fn``, repeated until it has used ``min_cpu`` CPU-seconds."""
    fn()  # warm-up
    used, calls = 0.0, 0
    while used < min_cpu:
        used += _timed(fn)[1]
        calls += 1
    return calls * work / used


def bench_digits() -> None:
    from torch.nn import functional

    from negd.bench.classifiers import initial_classifier_params
    from negd.bench.workloads import get_workload
    from negd.engine import advance
    from negd.losses.module import ModuleLoss, loss_for

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        workload = get_workload("digits-mlp")
        x, y = workload.data("cpu")
        rule = Neuroevolution(workload.sigma, workload.beta)
        fast = loss_for(workload.model(), x, y, loss="cross_entropy")
        generic = ModuleLoss(workload.model(), x, y, loss=lambda pred, t: functional.cross_entropy(pred, t))
        rates = {}
        for r in (1, 32, 256):
            state = rule.init(initial_classifier_params(workload, r), fast)
            run = fused_step_fn(rule, state, fast)
            assert run is not None, "the fused kernel should run digits-mlp"
            steps = max(2, 4096 // r)
            rates[r] = _cpu_rate(lambda run=run, state=state, steps=steps: run(state, steps), r * steps)
        state = rule.init(initial_classifier_params(workload, 32), generic)
        generic_rate = _cpu_rate(lambda: advance(rule, state, generic, 4), 32 * 4, 2.0)
        # torch's rate on the same products (a peer): the better of B independent products and one
        # product of the B inputs stacked (a shared weight, the most favourable layout for a GEMM)
        batch, points, width = 64, x.shape[0], 32
        a, b = torch.randn(batch, points, width), torch.randn(batch, width, width)
        out = torch.empty(batch, points, width)
        work = 10 * 2.0 * batch * points * width ** 2
        flops = max(_cpu_rate(lambda: [torch.bmm(a, b, out=out) for _ in range(10)], work),
                    _cpu_rate(lambda: [torch.mm(a.reshape(-1, width), b[0], out=out.reshape(-1, width))
                                       for _ in range(10)], work))
        # the machine's limit: one core's FMA peak and the kernel's tanh throughput, measured here
        peak, tanh_per_s = limits.fma_peak(), limits.tanh_throughput()
        limit = limits.step_limit(workload.flops_per_step, workload.tanh_per_step, peak, tanh_per_s)
    finally:
        torch.set_num_threads(threads)
    print(f"digits-mlp per CPU-second (one thread): limit {limit:,.0f} realization-steps/s (FMA peak "
          f"{peak / 1e9:.1f} GFLOP/s, tanh {tanh_per_s / 1e9:.2f} G/s; {workload.flops_per_step:,} FLOP + "
          f"{workload.tanh_per_step:,} tanh per step); torch's products: "
          f"{flops / workload.flops_per_step:,.0f} realization-steps/s ({flops / 1e9:.1f} GFLOP/s)")
    for r, rate in rates.items():
        print(f"  fused kernel R={r:<4d} {rate:10,.0f} realization-steps/s = {rate / limit:.2f} of the "
              f"limit, {rate * workload.flops_per_step / peak:.2f} of the FMA peak")
    print(f"  generic path R=32   {generic_rate:10,.0f} realization-steps/s; fused/generic at R=32: "
          f"{rates[32] / generic_rate:.1f}x", flush=True)


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
    if "digits" in which:
        bench_digits()


if __name__ == "__main__":
    main(sys.argv[1:])
