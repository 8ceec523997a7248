"""All cores against one thread on a busy machine (issue 18): the fused kernel beside busy loops.

    python benchmarks/oversubscription.py [--busy 0,2,4] [--rounds 3] [--seconds 2]
                                          [--base REV] [--out benchmarks/results-oversubscription]

For each number of busy loops (multiples of the core count: 0, 2x and 4x as many busy processes as
cores), this starts that many ``while True: pass`` processes, then times the deep network (8 x 32
tanh, 1001 points, R = 100, beta = inf, float32) with one thread and with as many threads as cores,
in alternating rounds, in wall-clock realization-steps per second (under load, CPU time would hide
the time a thread spends waiting for a descheduled sibling). With ``--base REV`` the kernel of REV
(``git archive``) is timed the same way beside the working tree's, in the same rounds. The busy
processes are stopped (by their process ids) before the next level and on exit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = textwrap.dedent(r'''
    import json, math, sys, time, torch
    threads, seconds = int(sys.argv[1]), float(sys.argv[2])
    torch.set_num_threads(threads)
    import negd
    t = negd.get_task("sinpi")
    spec = negd.MLPSpec(8, 32)
    fn = negd.MLPLoss(spec, t.inputs, t.targets)
    rule = negd.Neuroevolution(1e-3, math.inf)
    s = rule.init(negd.paper_init(spec.n_params, 1.0, seed=1), fn, realizations=100, seed=2)
    s = negd.advance(rule, s, fn, 2)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        s = negd.advance(rule, s, fn, 4); n += 4
    print(json.dumps({"rate": n * 100 / (time.perf_counter() - t0),
                      "loss_sum": float(s.loss.double().sum()), "steps": n}))
''')


def _probe(src: Path, threads: int, seconds: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads), str(seconds)], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", default="0,2,4", help="busy loops per core, comma-separated")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--base", default=None, help="also time this git revision's kernel")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results-oversubscription")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    sides = {"tree": ROOT / "src"}
    tmp = tempfile.TemporaryDirectory(prefix="negd-oversub-")
    if args.base:
        tar = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", args.base, "src"],
                             capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(tmp.name, filter="data")
        sides[f"base {args.base}"] = Path(tmp.name) / "src"
    results = []
    for per_core in [int(x) for x in args.busy.split(",")]:
        procs = _busy(per_core * cores)
        try:
            time.sleep(0.5)
            best: dict = {}
            for r in range(args.rounds):
                for side, src in sides.items():
                    for threads in (1, cores) if r % 2 == 0 else (cores, 1):
                        got = _probe(src, threads, args.seconds)
                        key = (side, threads)
                        best.setdefault(key, []).append(got["rate"])
            load = os.getloadavg()
        finally:
            _stop(procs)
        for side in sides:
            one, all_ = best[(side, 1)], best[(side, cores)]
            row = {"busy_loops": per_core * cores, "side": side, "load_1min": load[0],
                   "one_thread": one, "all_threads": all_,
                   "median_ratio": sorted(all_)[len(all_) // 2] / sorted(one)[len(one) // 2],
                   "worst_ratio": min(all_) / max(one)}
            results.append(row)
            print(f"busy {per_core * cores:2d} {side:16s} one thread {max(one):7,.0f}  {cores} threads "
                  f"{max(all_):7,.0f}  median ratio {row['median_ratio']:.2f}  (load {load[0]:.1f})",
                  flush=True)
        time.sleep(2)
    machine = {"cpu": platform.processor() or platform.machine(), "cores": cores,
               "python": platform.python_version(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    try:
        machine["cpu"] = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                              .splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    args.out.with_suffix(".json").write_text(json.dumps({"machine": machine, "rounds": args.rounds,
                                                         "seconds": args.seconds, "rows": results}, indent=1)
                                             + "\n")
    lines = ["# All cores against one thread beside busy loops (benchmarks/oversubscription.py)", "",
             f"{machine['date']}; {machine['cpu']}, {cores} cores; deep 8 x 32 net, R = 100, float32, "
             f"wall-clock realization-steps/s, {args.rounds} alternating rounds of ~{args.seconds:g} s per "
             "cell; the machine is shared with other agents, whose load adds to the busy loops.", "",
             "| busy loops | kernel | one thread (median) | all threads (median) | all/one (medians) | "
             "all/one (worst all vs best one) | load (1 min) |", "|---|---|---|---|---|---|---|"]
    for row in results:
        one, all_ = sorted(row["one_thread"]), sorted(row["all_threads"])
        lines.append(f"| {row['busy_loops']} | {row['side']} | {one[len(one) // 2]:,.0f} | "
                     f"{all_[len(all_) // 2]:,.0f} | {row['median_ratio']:.2f} | {row['worst_ratio']:.2f} | "
                     f"{row['load_1min']:.1f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    tmp.cleanup()


if __name__ == "__main__":
    main()
