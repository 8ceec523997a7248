"""Cost of resolving dU (issue 7): the fused kernel before and after float64 losses, side by side.

    python benchmarks/loss_resolution.py [--before REV] [--rounds 3] [--out PATH_STEM]

"before" is the kernel source of git revision REV (default e65b0cc, the last one with float32 losses),
compiled here with the same flags into a temporary library; "after" is this checkout's kernel with float32
parameters and with float64 parameters. The three are timed in interleaved rounds on the same ensembles
(the paper's shallow 1-30-1 net, R = 1000, and deep 8x32 net, R = 100) and the best round of each is
kept; rates are realization-steps per CPU-second times the thread count (the rate of an idle machine).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

import negd
from negd.engine import fused_step_fn
from negd.experiments.run.environment import versions
from negd.kernels import build

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = {  # name: (spec, task, R, sigma, steps)
    "shallow": (negd.MLPSpec(1, 30, output_bias=False), "sin2pi", 1000, 2.5e-6, 200),
    "deep": (negd.MLPSpec(8, 32), "sinpi", 100, 2.5e-5, 60),
}


def _old_library(rev: str) -> ctypes.CDLL:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:src/negd/kernels/negd_kernels.c"],
                            capture_output=True, text=True, check=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="negd-before-"))
    (folder / "k.c").write_text(source)
    subprocess.run([build._compiler(), *build.CFLAGS, str(folder / "k.c"), "-o", str(folder / "k.so"), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(folder / "k.so"))
    p, i64, u64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint64, ctypes.c_double
    lib.negd_fused_ne.argtypes = [p, i64, i64, p, p, p, p, p, p, p, i64, i64, u64, i64, i64, p, i64, f64,
                                  ctypes.c_int]
    lib.negd_fused_ne.restype = ctypes.c_int
    return lib


def _cpu_time(fn) -> float:
    cpu = time.process_time()
    fn()
    return time.process_time() - cpu


def _runner_before(lib, spec, loss_fn, x0, r, sigma, steps):
    data = loss_fn.kernel_data(x0.float()[None])
    params0 = x0.float()[None].repeat(r, 1).contiguous()
    loss0 = loss_fn(params0).float()
    sig = torch.tensor([sigma], dtype=torch.float32)
    rid = torch.arange(r, dtype=torch.int64)
    ptr = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731

    def run():
        params, loss = params0.clone(), loss0.clone()
        acc, counts = torch.zeros(r, dtype=torch.uint8), torch.zeros(r, dtype=torch.int64)
        lib.negd_fused_ne(ptr(data.arch), data.n_points, data.ld, ptr(data.x), ptr(data.t), ptr(params),
                          ptr(loss), ptr(acc), ptr(counts), ptr(rid), r, spec.n_params, 1, 0, steps, ptr(sig),
                          1, math.inf, torch.get_num_threads())
    return run


def _runner_after(loss_fn, x0, r, sigma, steps, dtype):
    rule = negd.Neuroevolution(sigma, math.inf)
    state = rule.init(x0.to(dtype), loss_fn, realizations=r, seed=1)
    step = fused_step_fn(rule, state, loss_fn)
    return lambda: step(state, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="e65b0cc")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-loss-resolution")
    args = parser.parse_args()
    lib = _old_library(args.before)
    threads = torch.get_num_threads()
    results = {}
    for name, (spec, task_name, r, sigma, steps) in WORKLOADS.items():
        task = negd.get_task(task_name)
        loss_fn = negd.MLPLoss(spec, task.inputs, task.targets, backend="c")
        x0 = negd.paper_init(spec.n_params, 0.3, seed=1)
        runners = {"before (float32 loss)": _runner_before(lib, spec, loss_fn, x0, r, sigma, steps),
                   "after, float32 params": _runner_after(loss_fn, x0, r, sigma, steps, torch.float32),
                   "after, float64 params": _runner_after(loss_fn, x0, r, sigma, steps, torch.float64)}
        best = dict.fromkeys(runners, math.inf)
        for fn in runners.values():
            fn()  # warm-up
        for _ in range(args.rounds):
            for label, fn in runners.items():
                best[label] = min(best[label], _cpu_time(fn))
        rates = {k: threads * r * steps / v for k, v in best.items()}
        base = rates["before (float32 loss)"]
        results[name] = {k: {"rate": v, "ratio_to_before": v / base} for k, v in rates.items()}
        for k, v in rates.items():
            print(f"{name:8s} {k:24s} {v:12,.0f} realization-steps/s   {v / base:5.2f}x before", flush=True)
    machine = {"cpu": versions()["cpu"], "threads": threads,
               "torch": torch.__version__, "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d"), "before": args.before}
    payload = {"machine": machine, "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["# Fused kernel before/after float64 losses (benchmarks/loss_resolution.py)", "",
             f"Machine: {machine['cpu']}, {threads} threads, torch {machine['torch']}, {machine['date']}; "
             f"before = git {args.before}; best of {args.rounds} interleaved rounds, per CPU-second x "
             "threads.",
             "", "| workload | kernel | realization-steps/s | vs before |", "|---|---|---|---|"]
    for name, rows in results.items():
        for k, v in rows.items():
            lines.append(f"| {name} | {k} | {v['rate']:,.0f} | {v['ratio_to_before']:.2f}x |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
