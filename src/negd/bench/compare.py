"""``python -m negd.bench.compare REV``: the kernel of git revision REV against the working tree.

A regression guard for the C kernel (issue 18): run it before merging any change to
``src/negd/kernels`` and keep its output in ``benchmarks/``. REV's ``src/`` is exported with
``git archive`` into a temporary folder (the repository and its worktrees are not touched); each
side runs in its own Python process with ``PYTHONPATH`` pointing at its ``src/`` (so each compiles
and loads its own kernel), on one thread (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).
The two sides alternate for ``--rounds`` rounds; each round times every workload for about
``--seconds`` CPU-seconds, and the best round of each side is kept: CPU time and best-of-rounds make
the ratio robust to other processes on a shared machine (they slow a round down, never speed it up).

Workloads (neuroevolution, beta = inf, the same start, seeds and data on both sides):
shallow 1-30-1 (R = 1000), deep 8 x 32 (R = 100), digits-mlp 64-32-10 tanh with softmax
cross-entropy (R = 32), and shallow with float64 parameters. A revision that cannot run a workload
(no classifiers, no float64 parameters) shows "n/a". Each rate is also given as a fraction of one
core's float32 FMA peak, measured by the working tree's probe (:mod:`negd.kernels.limits`).
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

__all__ = ["main", "WORKLOADS", "PROBE"]

# name: (forward multiply-add FLOPs per realization-step; 2 per MAC) -- the probe defines the nets
WORKLOADS = {
    "shallow": 2 * 1000 * (30 + 30),
    "deep": 2 * 1001 * (32 + 7 * 32 * 32 + 32),
    "digits-mlp": 2 * 1347 * (64 * 32 + 32 * 10),
    "shallow-f64": 2 * 1000 * (30 + 30),
}

PROBE = textwrap.dedent(r'''
    import json, math, sys, time, torch
    torch.set_num_threads(1)
    import negd
    seconds, which = float(sys.argv[1]), sys.argv[2].split(",")

    def rate(spec, task, loss, R, sigma, sigma0, steps, dtype=torch.float32):
        t = negd.get_task(task)
        kw = {"loss": loss} if loss != "mse" else {}
        fn = negd.MLPLoss(spec, t.inputs, t.targets, **kw)
        rule = negd.Neuroevolution(sigma, math.inf)
        x0 = negd.paper_init(spec.n_params, sigma0, seed=1).to(dtype)
        s = rule.init(x0, fn, realizations=R, seed=2)
        if s.params.dtype != dtype:
            return None  # this revision has no such parameters
        try:
            from negd.engine import fused_step_fn
            if fused_step_fn(rule, s, fn) is None:
                return None  # not the kernel: not what this guard compares
        except ImportError:
            pass
        s = negd.advance(rule, s, fn, steps)  # warm-up: build, caches
        best = 0.0
        for _ in range(2):
            t0 = time.process_time(); n = 0
            while time.process_time() - t0 < seconds / 2:
                s = negd.advance(rule, s, fn, steps); n += steps
            best = max(best, n * R / (time.process_time() - t0))
        return best

    def run(name):
        if name == "shallow":
            return rate(negd.MLPSpec(1, 30, output_bias=False), "sin2pi", "mse", 1000, 1e-3, 1e-2, 5)
        if name == "deep":
            return rate(negd.MLPSpec(8, 32), "sinpi", "mse", 100, 1e-3, 1.0, 3)
        if name == "digits-mlp":
            spec = negd.MLPSpec(1, 32, in_features=64, out_features=10, activation="tanh")
            return rate(spec, "digits", "cross_entropy", 32, 1e-2, 0.1, 3)
        if name == "shallow-f64":
            return rate(negd.MLPSpec(1, 30, output_bias=False), "sin2pi", "mse", 1000, 1e-3, 1e-2, 5,
                        torch.float64)

    out = {}
    for name in which:
        try:
            out[name] = run(name)
        except Exception:  # a revision without this workload's features
            out[name] = None
    print(json.dumps(out))
''')


def _root() -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit("negd.bench.compare: run it inside the negd git checkout")
    return Path(out.stdout.strip())


def _export(root: Path, rev: str, dest: Path) -> str:
    """``rev``'s src/ into ``dest``; returns the full commit id."""
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"negd.bench.compare: REV: not a commit of this repository: {rev!r}")
    tar = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", commit.stdout.strip(), "src"],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        try:
            archive.extractall(dest, filter="data")
        except TypeError:  # Python without extraction filters (< 3.11.4)
            archive.extractall(dest)
    return commit.stdout.strip()


def _probe(src: Path, seconds: float, which: list[str], cache: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "NEGD_CACHE": str(cache)}
    env.pop("NEGD_DISABLE_KERNELS", None)
    out = subprocess.run([sys.executable, "-c", PROBE, str(seconds), ",".join(which)], env=env,
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"probe of {src} failed: {tail[:300]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fma_peak() -> float | None:
    try:
        from negd.kernels import limits

        return limits.fma_peak()
    except Exception:  # the working tree's kernels unavailable: report without fractions
        return None


def compare(rev: str, rounds: int, seconds: float, which: list[str]) -> dict:
    root = _root()
    with tempfile.TemporaryDirectory(prefix="negd-compare-") as tmp:
        base = Path(tmp) / "base"
        commit = _export(root, rev, base)
        cache = Path(tmp) / "cache"  # a fresh build of each side, with the flags of its own build.py
        sides = {"base": base / "src", "tree": root / "src"}
        best: dict[str, dict[str, float | None]] = {s: dict.fromkeys(which) for s in sides}
        started = time.time()
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))  # neither side always first
            for side in order:
                for name, v in _probe(sides[side], seconds, which, cache).items():
                    if v is not None:
                        best[side][name] = max(best[side][name] or 0.0, v)
            print(f"[{time.time() - started:5.0f} s] round {r + 1}/{rounds} done", file=sys.stderr,
                  flush=True)
    peak = _fma_peak()
    rows = []
    for name in which:
        t, b = best["tree"][name], best["base"][name]
        rows.append({"workload": name, "tree": t, "base": b, "ratio": t / b if t and b else None,
                     "tree_fma_fraction": t * WORKLOADS[name] / peak if t and peak else None,
                     "base_fma_fraction": b * WORKLOADS[name] / peak if b and peak else None})
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {"base": commit, "tree": head + ("+dirty" if dirty else ""), "rounds": rounds,
            "seconds": seconds, "fma_peak_flops": peak, "rows": rows,
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1_5_15": list(os.getloadavg()),
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}


def markdown(report: dict) -> str:
    m = report["machine"]
    peak = report["fma_peak_flops"]
    lines = [f"# Kernel speed: working tree ({report['tree'][:12]}) against {report['base'][:12]}", "",
             f"`python -m negd.bench.compare {report['base'][:12]} --rounds {report['rounds']}`; "
             f"{m['date']}; {m['cpu']}, {m['cores']} cores, load average at the end "
             f"{', '.join(f'{x:.1f}' for x in m['load_average_1_5_15'])}; python {m['python']}. "
             "One thread, realization-steps per CPU-second, best of "
             f"{report['rounds']} alternating rounds of ~{report['seconds']:g} CPU-s per workload. "
             + (f"One core's float32 FMA peak: {peak / 1e9:.1f} GFLOP/s." if peak else ""), "",
             "| workload | tree | base | tree/base | tree: of FMA peak | base: of FMA peak |",
             "|---|---|---|---|---|---|"]

    def f(x, fmt):
        return "n/a" if x is None else format(x, fmt)

    for r in report["rows"]:
        lines.append(f"| {r['workload']} | {f(r['tree'], ',.0f')} | {f(r['base'], ',.0f')} | "
                     f"{f(r['ratio'], '.2f')} | {f(r['tree_fma_fraction'], '.2f')} | "
                     f"{f(r['base_fma_fraction'], '.2f')} |")
    worst = [r for r in report["rows"] if r["ratio"] is not None and r["ratio"] < 0.97]
    lines += ["", "Regressions (tree/base < 0.97): " + (", ".join(r["workload"] for r in worst) or "none")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m negd.bench.compare", description=__doc__.splitlines()[0])
    p.add_argument("rev", help="git revision whose kernel is the base (e.g. main, 216be52)")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds (default 4)")
    p.add_argument("--seconds", type=float, default=1.0, help="CPU-seconds per workload and round")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated, from {','.join(WORKLOADS)}")
    p.add_argument("--out", type=Path, default=None, help="also write markdown here (and JSON beside it)")
    args = p.parse_args(argv)
    which = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in which if w not in WORKLOADS]
    if bad or not which:
        print(f"negd.bench.compare: workloads: each must be one of {list(WORKLOADS)}, got {args.workloads!r}",
              file=sys.stderr)
        return 2
    if args.rounds < 1 or not args.seconds > 0:
        print("negd.bench.compare: rounds must be >= 1 and seconds > 0", file=sys.stderr)
        return 2
    report = compare(args.rev, args.rounds, args.seconds, which)
    text = markdown(report)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
