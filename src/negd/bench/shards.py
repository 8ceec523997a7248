"""``python -m negd.bench.shards``: sharded runs next to the unsharded one, in one run (issue 8).

Throughput, in realization-steps per second, of a whole experiment run (``run_experiment``:
neuroevolution, twin, snapshot rows and regime checks; no report) done three ways on this machine:

* ``unsharded``: the default run, torch (hence the C kernel) on all cores;
* ``shards-1``: ``--shards 1`` in-process, the same work through the shard machinery (its overhead);
* ``ray``: ``--ray`` on a local cluster, one single-threaded shard per core. The cluster is started
  once, before the rounds, and its start-up time is reported apart (``ray.init``: several seconds).

The three are timed in interleaved rounds (A B C, A B C, ...), after one warm-up run each (kernel
build, Ray workers building their problem), so a change of load on a shared machine hits each
alike; the table gives the median over rounds and the ratios to ``unsharded``, marked against the
issue's targets: ray >= 0.8x, the overhead of ``--shards 1`` below 5%.

    python -m negd.bench.shards [--workloads shallow,deep] [--rounds 3] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from negd.bench.measure import machine_info
from negd.experiments.config.presets import EXPERIMENTS
from negd.experiments.config.schema import ExperimentConfig, config_from_dict
from negd.experiments.run.runner import run_experiment
from negd.validation import NegdError

__all__ = ["main", "WORKLOADS", "workload_config"]

TARGET_RAY_RATIO, TARGET_SHARDS1_OVERHEAD = 0.8, 0.05
MODES = ("unsharded", "shards-1", "ray")

# Quick presets of the paper's experiments, made long enough (NE steps) and coarse enough (snapshots)
# that an interval is seconds of work per shard, as at paper scale. realizations: per core.
WORKLOADS: dict[str, dict] = {
    "shallow": {"experiment": "shallow", "per_core": 32, "ne_steps": 40_000, "n_snapshots": 5},
    "deep": {"experiment": "deep", "per_core": 8, "ne_steps": 3_000, "n_snapshots": 5},
}


def workload_config(name: str, cores: int) -> ExperimentConfig:
    """The quick preset of the workload's experiment with its steps, snapshots and R = per_core x cores."""
    w = WORKLOADS[name]
    data = {k: v for k, v in EXPERIMENTS[w["experiment"]]["quick"].items() if k != "scan"}
    steps_per_t = 1.0 / (data["alpha"] * data["lambda"])  # NE steps per unit of t (beta = inf)
    data.update(realizations=w["per_core"] * cores, trajectories=2, n_snapshots=w["n_snapshots"],
                t_final=w["ne_steps"] / steps_per_t, seed=0)
    return config_from_dict(data, experiment=w["experiment"], scale="quick")


def _timed_run(config: ExperimentConfig, mode: str, cores: int, root: Path) -> float:
    """Realization-steps per second of one run of ``config`` in ``mode``."""
    out = Path(tempfile.mkdtemp(dir=root))
    kwargs = {"unsharded": {}, "shards-1": {"shards": 1}, "ray": {"shards": cores, "ray": "local"}}[mode]
    torch.set_num_threads(cores)
    start = time.perf_counter()
    run_experiment(config, out / "run", progress=False, report=False, **kwargs)
    elapsed = time.perf_counter() - start
    work = sum(a.realizations * a.ne_steps for a in config.arms())
    return work / elapsed


def _start_ray(cores: int) -> tuple[object, float]:
    try:
        import ray
    except ImportError:
        raise NegdError("ray: not installed; pip install -e '.[ray]' to benchmark the Ray shards") from None
    start = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    return ray, time.perf_counter() - start


def measure(workloads: list[str], rounds: int, cores: int) -> dict:
    ray, ray_start = _start_ray(cores)
    results: dict = {"ray_start_seconds": ray_start, "workloads": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for name in workloads:
                config = workload_config(name, cores)
                for mode in MODES:  # warm-up: kernel build, Ray workers' problem and kernel
                    _timed_run(config, mode, cores, root)
                rates: dict[str, list[float]] = {m: [] for m in MODES}
                for r in range(rounds):
                    for mode in MODES:
                        rates[mode].append(_timed_run(config, mode, cores, root))
                        print(f"  {name} round {r + 1}/{rounds} {mode}: {rates[mode][-1]:,.0f} r-steps/s",
                              file=sys.stderr, flush=True)
                med = {m: statistics.median(v) for m, v in rates.items()}
                results["workloads"][name] = {
                    "realizations": config.realizations, "ne_steps": config.arms()[0].ne_steps,
                    "n_snapshots": config.n_snapshots, "rates": rates, "median": med,
                    "ray_ratio": med["ray"] / med["unsharded"],
                    "shards1_overhead": med["unsharded"] / med["shards-1"] - 1.0}
    finally:
        ray.shutdown()
    return results


def render(results: dict, machine: dict, cores: int) -> str:
    lines = [f"# Sharded runs next to the unsharded one ({cores} cores)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, "
             f"load average at start {', '.join(f'{x:.2f}' for x in machine['load_average_1_5_15'])}; "
             f"{machine['date']}, git {machine['git_commit']}.", "",
             f"Local Ray cluster start-up (ray.init, {cores} CPUs, not counted below): "
             f"{results['ray_start_seconds']:.1f} s.", "",
             "| workload | R | NE steps | unsharded (all cores) | --shards 1 | Ray, 1 thread x "
             f"{cores} shards | Ray / unsharded (target >= {TARGET_RAY_RATIO}) | --shards 1 overhead "
             f"(target < {TARGET_SHARDS1_OVERHEAD:.0%}) |", "|---|---|---|---|---|---|---|---|"]
    for name, w in results["workloads"].items():
        med = w["median"]
        ray_ok = "met" if w["ray_ratio"] >= TARGET_RAY_RATIO else "NOT met"
        s1_ok = "met" if w["shards1_overhead"] < TARGET_SHARDS1_OVERHEAD else "NOT met"
        lines.append(f"| {name} | {w['realizations']} | {w['ne_steps']:,} | {med['unsharded']:,.0f} | "
                     f"{med['shards-1']:,.0f} | {med['ray']:,.0f} | {w['ray_ratio']:.2f} ({ray_ok}) | "
                     f"{w['shards1_overhead']:+.1%} ({s1_ok}) |")
    lines += ["", "Realization-steps per second of whole runs (snapshots and regime checks included, no "
              "report), median of interleaved rounds after one warm-up run each; every round's rate is in "
              "the JSON."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m negd.bench.shards", description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="shallow,deep", help=f"comma-separated, of {', '.join(WORKLOADS)}")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (default 3)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to use (default: all)")
    p.add_argument("--out", type=Path, default=None, help="write the table (.md) and every rate (.json)")
    args = p.parse_args(argv)
    try:
        names = [n.strip() for n in args.workloads.split(",") if n.strip()]
        bad = [n for n in names if n not in WORKLOADS]
        if bad or not names:
            raise NegdError(f"--workloads: each must be one of {', '.join(WORKLOADS)}, "
                            f"got {args.workloads!r}")
        if args.rounds < 1 or args.cores < 1:
            raise NegdError("--rounds, --cores: must be integers >= 1")
        machine = machine_info("cpu")
        results = measure(names, args.rounds, args.cores)
    except NegdError as e:
        print(f"negd: {e}", file=sys.stderr)
        return 2
    table = render(results, machine, args.cores)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
        args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, **results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
