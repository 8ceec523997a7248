"""The Langevin twin ensemble at speed (issue 8 item 5): neuroevolution vs its gradient twin, side by side.

    python benchmarks/twin_speed.py [--before REV] [--realizations 16] [--rounds 3] [--out PATH_STEM]

At finite beta the twin is an ensemble of R_L Langevin runs (Whitelam et al. 2021; negd.experiments.run.twin),
each GD step one loss *and gradient* of every realization. Timed on one thread, in realization-steps per
CPU-second, on the paper's finite-beta network (1-256-1 tanh, 1000 points of sin(2 pi t), float32, its
x(0) and rates from the preset "finite-beta" "paper") and on the deep 8x32 tanh net (1001 points of
sin(pi t), float32, preset "deep" "paper"):

* ``NE fused kernel``: neuroevolution, negd.engine's fused kernel (the yardstick);
* ``twin: fused kernel``: Langevin steps of a TwinLoss, fused in C (negd.kernels.gradient.fused_langevin);
* ``twin: kernel gradient, python loop``: Langevin.step per step, TwinLoss's kernel value_and_grad
  (the moment-matched twin's path);
* ``twin: torch backprop``: the same with MLPLoss(backend="torch"): batched closed-form backprop
  (negd.losses.backprop), the path where no compiler is found;
* ``twin: before (REV)``: TwinLoss as it was at git REV (default 105dd6f: the hand-written 1-W-1
  backward with the kernel's tanh, one realization at a time; autograd for other networks), loaded
  from that revision's source;
* ``autograd``: Langevin.step on the plain MLPLoss (torch.autograd).

Paths are timed in interleaved rounds on the same ensemble (R realizations from x(0)), best round kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import time
import types
from pathlib import Path

import torch

from negd.engine import advance
from negd.experiments.config.presets import preset
from negd.experiments.run.environment import versions
from negd.experiments.run.problem import Problem
from negd.experiments.run.twin import TwinLoss
from negd.losses.mlp import MLPLoss
from negd.rules import Langevin, Neuroevolution

ROOT = Path(__file__).resolve().parents[1]
MIN_SECONDS = 0.4  # CPU time of one timed run


def _cpu_details() -> str:
    """CPU family and model (CPUID) and whether it has AVX-512, from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    fields = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    avx512 = "AVX-512" if "avx512f" in fields.get("flags", "").split() else "AVX2, no AVX-512"
    return f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}, {avx512}"


def _old_twin_loss(rev: str) -> type:
    """The TwinLoss class of the twin module at git ``rev`` (experiments/run/twin.py, or before the
    layout move experiments/twin.py, whose 0.1 imports still resolve through negd._compat)."""
    for path in ("src/negd/experiments/run/twin.py", "src/negd/experiments/twin.py"):
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            break
    else:
        raise SystemExit(f"no twin module at {rev}")
    source = shown.stdout
    module = types.ModuleType(f"twin_at_{rev}")
    exec(compile(source, f"twin.py@{rev}", "exec"), module.__dict__)  # noqa: S102 - our own history
    return module.TwinLoss


def _workload(name: str) -> tuple[Problem, Neuroevolution, Langevin]:
    """The paper-scale problem of preset ``name``, its first arm's NE rule and a Langevin twin rule."""
    config = preset(name, "paper", scan=False)
    problem = Problem.build(config)
    arm = config.arms()[0]
    ne = problem.ne_rule(arm)
    if config.twin == "langevin":
        twin = problem.gd_rule(arm)
    else:  # beta = inf (deep): a Langevin rule of the same rate, for its cost alone
        twin = Langevin(alpha=config.alpha, noise=arm.sigma)
    return problem, ne, twin


def _timer(rule, loss_fn, x0: torch.Tensor, realizations: int):
    """A function steps -> CPU seconds of ``advance`` of R realizations from x(0) (one fresh state)."""
    state = rule.init(x0, loss_fn, seed=0, realizations=realizations)

    def run(steps: int) -> float:
        cpu = time.process_time()
        advance(rule, state, loss_fn, steps)
        return time.process_time() - cpu
    return run


def _calibrate(run) -> int:
    """Steps for one timed run of about MIN_SECONDS of CPU."""
    steps = 1
    while (seconds := run(steps)) < MIN_SECONDS / 4:
        steps *= 2
    return max(1, math.ceil(steps * MIN_SECONDS / max(seconds, 1e-9)))


def measure(name: str, realizations: int, rounds: int, before: str) -> dict[str, float]:
    problem, ne, twin = _workload(name)
    loss_fn, x0 = problem.loss_fn, problem.x0
    torch_loss = MLPLoss(loss_fn.spec, loss_fn.inputs, loss_fn.targets, backend="torch")
    old = _old_twin_loss(before)
    paths = {
        "NE fused kernel": _timer(ne, loss_fn, x0, realizations),
        "twin: fused kernel": _timer(twin, TwinLoss(loss_fn), x0, realizations),
        "twin: kernel gradient, python loop": _timer(_Unfused(twin), TwinLoss(loss_fn), x0, realizations),
        "twin: torch backprop": _timer(twin, TwinLoss(torch_loss), x0, realizations),
        f"twin: before ({before})": _timer(twin, old(loss_fn), x0, realizations),
        "autograd": _timer(twin, loss_fn, x0, realizations),
    }
    steps = {label: _calibrate(run) for label, run in paths.items()}  # also the warm-up
    best = dict.fromkeys(paths, math.inf)
    for _ in range(rounds):
        for label, run in paths.items():
            best[label] = min(best[label], run(steps[label]) / steps[label])
    return {label: realizations / seconds for label, seconds in best.items()}


class _Unfused:
    """A rule that steps like ``rule`` but is not the type negd.engine fuses (so advance loops its step)."""

    def __init__(self, rule) -> None:
        self.rule = rule

    def init(self, *args, **kw):
        return self.rule.init(*args, **kw)

    def step(self, state, loss_fn):
        return self.rule.step(state, loss_fn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="105dd6f")
    parser.add_argument("--realizations", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workloads", default="finite-beta,deep")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-twin-speed")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_start = os.getloadavg()
    results = {}
    for name in args.workloads.split(","):
        rates = measure(name, args.realizations, args.rounds, args.before)
        ne = rates["NE fused kernel"]
        results[name] = {k: {"rate": v, "ne_over_this": ne / v} for k, v in rates.items()}
        for k, v in rates.items():
            print(f"{name:12s} {k:40s} {v:10,.0f} realization-steps/s   NE / this {ne / v:6.2f}", flush=True)
    machine = {"cpu": versions()["cpu"], "cpu_details": _cpu_details(), "cores": os.cpu_count(), "threads": 1,
               "torch": torch.__version__,
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "before": args.before,
               "load_average_start": load_start, "load_average_end": os.getloadavg(),
               "realizations": args.realizations, "rounds": args.rounds}
    payload = {"machine": machine, "results": results}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    load = ", ".join(f"{a:.2f}" for a in load_start)
    lines = ["# The twin ensemble at speed (benchmarks/twin_speed.py)", "",
             f"Machine: {machine['cpu']} ({machine['cpu_details']}; {machine['cores']} cores, shared), "
             f"one thread, torch {machine['torch']}, "
             f"{machine['date']}, load average {load} at the start. R = {args.realizations} realizations, "
             f"float32; best of {args.rounds} interleaved rounds, realization-steps per CPU-second. One twin "
             "step is a loss and a gradient (a forward and a backward pass), one NE step a loss.", "",
             "| workload | path | realization-steps/s | NE / this |", "|---|---|---|---|"]
    for name, rows in results.items():
        for k, v in rows.items():
            lines.append(f"| {name} | {k} | {v['rate']:,.0f} | {v['ne_over_this']:.2f}x |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
