"""negd against evosax's Open_ES on the digits MLP, side by side in one run (issue 18, item 4).

    python benchmarks/evosax_peer.py [--populations 32,256] [--rounds 5] [--seconds 1.5]
                                     [--out benchmarks/results-peers]

One process, one thread for everything (``torch.set_num_threads(1)``; XLA without its Eigen pool and
with one intra-op thread, flags set before jax is imported). For each population size P the
implementations below are timed in alternating rounds (the order rotates every round), each for
about ``--seconds`` of CPU time after a warm-up, in evaluations per CPU-second (one evaluation = one
forward pass and loss over the 1347 training digits): on a shared machine CPU time measures what a
run costs, whatever else runs beside it. Reported: best and median over rounds, and negd over the
fastest evosax form (best over best, median over median).

* ``negd NE``: :class:`negd.Neuroevolution` at R = P on ``negd.loss_for`` (the fused C kernel);
* ``negd Population``: :class:`negd.Population` (elitist, K = P children, R = 1: one search point
  and P evaluations per step, like Open_ES);
* ``evosax Open_ES (lean, sum)`` / ``(lean, @)``: :class:`negd.bench.jax_peers.EvosaxOpenESPeer`,
  Open_ES's own ask/shaping/tell arithmetic, output layer as ``sum(h * w2)`` or ``h @ w2``;
* ``evosax Open_ES (ask/tell, sum)``: the same through evosax's public ``ask``/``tell``.

Requires the ``bench`` extra (jax, evosax). Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from negd.bench.jax_peers import one_thread_xla  # noqa: E402

one_thread_xla()  # before anything imports jax

import torch  # noqa: E402

import negd  # noqa: E402
from negd.bench.classifiers import ClassifierNegdPeer, initial_classifier_params  # noqa: E402
from negd.bench.jax_peers import EvosaxOpenESPeer, evosax_available  # noqa: E402
from negd.bench.measure import _version, machine_info  # noqa: E402
from negd.bench.workloads import get_workload  # noqa: E402
from negd.engine import fused_step_fn  # noqa: E402

TARGET = 1.6  # issue 18: negd digits-mlp >= 1.6x evosax Open_ES


class PopulationPeer(ClassifierNegdPeer):
    """negd's Population rule (elitist, K = P, R = 1) on the digits MLP."""

    def __init__(self, workload, k: int, seed: int = 0) -> None:
        x, y = workload.data()
        self.device = torch.device("cpu")
        self.loss_fn = negd.loss_for(workload.model(), x, y, loss="cross_entropy")
        self.rule = negd.Population(workload.sigma, k=k, selection="elitist", beta=workload.beta)
        self.state = self.rule.init(initial_classifier_params(workload, 1, seed), self.loss_fn, seed=seed)
        self.realization_steps_per_step = k
        self.fused = False


def build(name: str, workload, population: int):
    if name == "negd NE":
        return ClassifierNegdPeer(workload, population, torch.device("cpu"), 0)
    if name == "negd Population":
        return PopulationPeer(workload, population)
    api = "public" if "ask/tell" in name else "lean"
    form = "matmul" if "@" in name else "sum"
    return EvosaxOpenESPeer(workload, population, form=form, api=api)


IMPLS = ("negd NE", "negd Population", "evosax Open_ES (lean, sum)", "evosax Open_ES (lean, @)",
         "evosax Open_ES (ask/tell, sum)")
NEGD, EVOSAX = IMPLS[:2], IMPLS[2:]


def cpu_rate(peer, seconds: float) -> float:
    """Evaluations per CPU-second over a run of about ``seconds`` CPU-seconds (calibrated)."""
    steps = peer.quantum
    while True:
        c0 = time.process_time()
        peer.run(steps)
        used = time.process_time() - c0
        if used >= seconds / 4:
            break
        steps *= 2
    steps = max(peer.quantum, int(steps * seconds / max(used, 1e-9)) // peer.quantum * peer.quantum)
    c0 = time.process_time()
    peer.run(steps)
    return steps * peer.realization_steps_per_step / (time.process_time() - c0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--populations", default="32,256")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-peers")
    args = p.parse_args(argv)
    if not evosax_available():
        print("evosax_peer: evosax/jax not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    workload = get_workload("digits-mlp")
    info = machine_info("cpu")
    info.update(evosax=_version("evosax"), optax=_version("optax"), xla_flags=os.environ.get("XLA_FLAGS"),
                torch_threads=torch.get_num_threads())
    results: dict = {}
    for pop in [int(t) for t in args.populations.split(",")]:
        peers = {}
        for name in IMPLS:
            t0 = time.perf_counter()
            peers[name] = build(name, workload, pop)
            peers[name].run(peers[name].quantum)  # compile / warm up
            print(f"P={pop} {name}: built and warmed in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        fused = fused_step_fn(peers["negd NE"].rule, peers["negd NE"].state, peers["negd NE"].loss_fn)
        rates: dict[str, list[float]] = {n: [] for n in IMPLS}
        loads = []
        for r in range(args.rounds):
            order = IMPLS[r % len(IMPLS):] + IMPLS[:r % len(IMPLS)]
            loads.append(os.getloadavg()[0])
            for name in order:
                rates[name].append(cpu_rate(peers[name], args.seconds))
            print(f"P={pop} round {r + 1}: " + ", ".join(f"{n} {rates[n][-1]:,.0f}" for n in IMPLS),
                  file=sys.stderr)
        best = {n: max(v) for n, v in rates.items()}
        median = {n: statistics.median(v) for n, v in rates.items()}
        fast_best = max(EVOSAX, key=lambda n: best[n])
        fast_median = max(EVOSAX, key=lambda n: median[n])
        results[pop] = {
            "rates": rates, "best": best, "median": median, "load_average_1min": loads,
            "negd_fused": fused is not None,
            "fastest_evosax_best": fast_best, "fastest_evosax_median": fast_median,
            "ratios_best": {n: best[n] / best[fast_best] for n in NEGD},
            "ratios_median": {n: median[n] / median[fast_median] for n in NEGD},
            "sum_over_matmul_median": median[EVOSAX[0]] / median[EVOSAX[1]],
            "lean_over_public_median": median[EVOSAX[0]] / median[EVOSAX[2]],
            "end_losses": {n: float(peers[n].losses().double().mean()) for n in IMPLS},
        }
    report = {"machine": info, "config": {"populations": list(results), "rounds": args.rounds,
                                          "seconds": args.seconds, "workload": workload.describe(),
                                          "flops_per_evaluation": workload.flops_per_step,
                                          "open_es": {"std": workload.sigma, "optimizer": "optax.sgd(1e-3)",
                                                      "antithetic": True, "generations_per_scan": 16},
                                          "negd_population": "elitist, K = P, R = 1"},
              "results": results, "target": TARGET}
    text = markdown(report)
    print(text)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def markdown(report: dict) -> str:
    m, cfg = report["machine"], report["config"]
    lines = ["# negd against evosax Open_ES, digits MLP (measured side by side)", "",
             f"{m['date']} | {m['cpu']}, {m['cores']} cores, shared with other work (load average at "
             f"start {', '.join(f'{x:.1f}' for x in m['load_average_1_5_15'])}) | one thread: torch "
             f"{m['torch']} ({m['torch_threads']} thread), jax {m['jax']} / jaxlib {m['jaxlib']}, evosax "
             f"{m['evosax']}, optax {m['optax']}, XLA_FLAGS `{m['xla_flags']}` | python {m['python']} | "
             f"commit {m['git_commit']}", "",
             f"{cfg['workload']}. Evaluations (forward pass + loss over the training set, "
             f"{cfg['flops_per_evaluation'] / 1e6:.2f} MFLOP) per CPU-second, {cfg['rounds']} rounds of "
             f"~{cfg['seconds']:g} CPU-s per implementation, implementations alternating (order rotated "
             "each round) in one process. Per CPU-second because the 2 cores are shared with other "
             "agents' work: wall rates would measure the share of a core each run got.", ""]
    for pop, res in report["results"].items():
        lines += [f"## Population {pop}", "",
                  "| implementation | best | median | all rounds | best / fastest evosax (best) | "
                  "median / fastest evosax (median) |", "|---|---|---|---|---|---|"]
        for name, rates in res["rates"].items():
            rb = res["ratios_best"].get(name)
            rm = res["ratios_median"].get(name)
            lines.append(f"| {name} | {res['best'][name]:,.0f} | {res['median'][name]:,.0f} | "
                         + ", ".join(f"{r:,.0f}" for r in rates) + " | "
                         + ("-" if rb is None else f"**{rb:.2f}x**") + " | "
                         + ("-" if rm is None else f"**{rm:.2f}x**") + " |")
        lines += ["", f"- fastest evosax form: {res['fastest_evosax_best']} (best), "
                  f"{res['fastest_evosax_median']} (median); output layer `sum(h * w2)` over `h @ w2`: "
                  f"{res['sum_over_matmul_median']:.2f}x (medians); lean steps over public ask/tell: "
                  f"{res['lean_over_public_median']:.2f}x",
                  f"- negd NE on the fused kernel: {res['negd_fused']}; 1-min load average during the "
                  f"rounds: {', '.join(f'{x:.1f}' for x in res['load_average_1min'])}",
                  f"- target negd >= {report['target']:g}x evosax Open_ES: negd NE "
                  f"{res['ratios_median']['negd NE']:.2f}x (medians), "
                  f"{'met' if res['ratios_median']['negd NE'] >= report['target'] else 'NOT met'}", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
