"""Wall time of the paper's experiments at full scale, projected from costs measured here.

    python benchmarks/paper_projection.py [--cores 2,64] [--machines 1,8] [--efficiency 0.94]
                                          [--seconds 3] [--out FILE.md]

For each experiment of ``negd reproduce --scale paper`` (negd.experiments.config.presets) it measures, on
one thread, the cost of one realization-step of every arm's neuroevolution (in the dtype the run
would use: ``auto`` picks float64 below sigma = 1.19e-5) and of one step of its ensemble twin, and
projects

    T = ( sum_arms R_a n_a c_a  +  sum_arms R_L,a n_GD,a c_twin ) / (n P e)

with R_a, n_a the arm's realizations and NE steps, n_GD,a its GD steps and R_L,a its twin's
realizations (ensemble twins only), c the measured CPU-seconds per realization-step, P cores per
machine, n machines, and e the parallel efficiency of one single-threaded shard per core (Ray
against the unsharded run, benchmarks/results-shards.md: 0.94-1.07 on 2 cores; 0.94 by default).
Snapshots (regime checks) and the report are not counted: at paper scale they are under 1% of
the work. The cost of a step does not depend on R, so a few realizations for a few seconds
measure it.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from negd.bench.measure import machine_info
from negd.engine import advance_tallied
from negd.experiments.config.presets import preset
from negd.experiments.run.problem import Problem

PROBE_REALIZATIONS = 16


def _seconds_per_step(rule, loss_fn, x0, seconds: float) -> float:
    """CPU-seconds per realization-step of ``rule`` (one thread, after a warm-up)."""
    state = rule.init(x0, loss_fn, seed=0, realizations=PROBE_REALIZATIONS)
    state, _ = advance_tallied(rule, state, loss_fn, 2)  # warm-up: kernel build, caches
    steps, elapsed = 2, 0.0
    while elapsed < seconds:
        start = time.process_time()
        state, _ = advance_tallied(rule, state, loss_fn, steps)
        elapsed = time.process_time() - start
        if elapsed < seconds:
            steps *= 2
    return elapsed / (steps * PROBE_REALIZATIONS)


def measure(name: str, seconds: float) -> dict:
    config = preset(name, "paper")
    problem = Problem.build(config)
    arms = []
    twin_cost = None
    for arm in config.arms():
        c_ne = _seconds_per_step(problem.ne_rule(arm), problem.loss_fn, problem.x0, seconds)
        row = {"label": arm.label, "sigma": arm.sigma, "realizations": arm.realizations,
               "ne_steps": arm.ne_steps, "ne_cost": c_ne, "twin_work": 0.0}
        if problem.ensemble_twin:
            if twin_cost is None:  # every arm's twin has the same cost per step
                twin_cost = _seconds_per_step(problem.gd_rule(arm), problem.twin_loss_fn, problem.x0, seconds)
            row["twin_work"] = float(problem.twin_realizations) * arm.gd_step_of(arm.ne_steps)
        arms.append(row)
    cpu = sum(a["realizations"] * a["ne_steps"] * a["ne_cost"] for a in arms)
    cpu += sum(a["twin_work"] for a in arms) * (twin_cost or 0.0)
    return {"experiment": name, "dtype": config.dtype, "arms": arms, "twin_cost": twin_cost,
            "cpu_seconds": cpu}


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def render(results: list[dict], cores: list[int], machines: list[int], efficiency: float, info: dict) -> str:
    lines = ["# Paper scale: measured cost per realization-step and projected wall time", "",
             f"Measured on {info['cpu']} ({info['cores']} cores), one thread, torch {info['torch']}, "
             f"{info['date']}, load average {', '.join(f'{x:.2f}' for x in info['load_average_1_5_15'])}. "
             f"Parallel efficiency e = {efficiency:g}.", "",
             "| experiment | arm | sigma | dtype | R | NE steps | CPU-us per r-step "
             "| twin CPU-us per r-step | twin r-steps |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for a in r["arms"]:
            twin = f"{r['twin_cost'] * 1e6:.1f}" if r["twin_cost"] else "-"
            lines.append(f"| {r['experiment']} | {a['label']} | {a['sigma']:.3g} | {r['dtype']} | "
                         f"{a['realizations']} | {a['ne_steps']:,} | {a['ne_cost'] * 1e6:.1f} | {twin} | "
                         f"{a['twin_work']:.3g} |")
    header = " | ".join(f"{n} x {p} cores" for n in machines for p in cores)
    lines += ["", "T = (sum_arms R_a n_a c_a + twin r-steps x c_twin) / (n P e):", "",
              f"| experiment | CPU-hours | {header} |", "|---|---|" + "---|" * (len(machines) * len(cores))]
    for r in results:
        cells = " | ".join(_duration(r["cpu_seconds"] / (n * p * efficiency))
                           for n in machines for p in cores)
        lines.append(f"| {r['experiment']} | {r['cpu_seconds'] / 3600:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default="shallow,deep,finite-beta")
    p.add_argument("--cores", default="2,64", help="cores per machine, comma-separated")
    p.add_argument("--machines", default="1,8", help="machines of a Ray cluster, comma-separated")
    p.add_argument("--efficiency", type=float, default=0.94)
    p.add_argument("--seconds", type=float, default=3.0, help="CPU-seconds per measured rate")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    info = machine_info("cpu")
    results = [measure(name.strip(), args.seconds) for name in args.experiments.split(",")]
    cores = [int(c) for c in args.cores.split(",")]
    machines = [int(n) for n in args.machines.split(",")]
    table = render(results, cores, machines, args.efficiency, info)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
