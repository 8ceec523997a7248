"""``negd bench``: negd against the usual ways of running neuroevolution, in one run.

For each workload (:mod:`negd.bench.workloads`) and ensemble size R, every implementation of
:mod:`negd.bench.peers` is timed in a fresh subprocess (so that its peak memory is its own),
together with the machine's limit for the workload. The table gives realization-steps per
second, the ratios negd/JAX, negd/loop, the cost of a mutation step relative to a gradient step,
and the fraction of the machine's limit negd reaches; it is printed and written as markdown and
JSON. See ``benchmarks/README.md`` for what each column means.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from negd.bench.measure import machine_info
from negd.bench.peers import PEERS
from negd.bench.workloads import WORKLOADS, get_workload
from negd.validation import NegdError

__all__ = ["main", "build_parser"]

MEMORY_REALIZATIONS = 100_000
MEMORY_LIMIT_MB = 2048.0
# Targets of the issue: (what, threshold).
TARGET_JAX_RATIO, TARGET_LOOP_RATIO = 3.0, 40.0
TARGET_DEEP_LIMIT_FRACTION, TARGET_MUTATION_COST = 0.5, 0.5
# Issue 18: fractions of the FMA peak (one core's float32 FMA peak times the cores used).
TARGET_DEEP_FMA_FRACTION, TARGET_DIGITS_MLP_FMA_FRACTION = 0.70, 0.65
# Issue 18: negd's digits MLP against the fastest form of evosax's Open_ES (per CPU-second).
TARGET_DIGITS_MLP_EVOSAX = 1.6
# Classifier targets (issue 10): digits MLP R=32 limit fraction and ratio to the generic path,
# digits CNN R=32 ratio to the per-realization loop.
TARGET_DIGITS_MLP_LIMIT, TARGET_DIGITS_MLP_GENERIC, TARGET_DIGITS_CNN_LOOP = 0.5, 5.0, 3.0


def _csv(kind: str, allowed: list[str] | None = None):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if kind == "int":
            try:
                values = [int(t) for t in items]
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None
            if not values or any(v < 1 for v in values):
                raise argparse.ArgumentTypeError(f"must be integers >= 1, got {text!r}")
            return values
        if items == ["none"]:
            return []
        bad = [t for t in items if allowed is not None and t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"each must be one of {allowed}, got {text!r}")
        return items
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="negd bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", type=_csv("str", list(WORKLOADS)), default=None,
                   help=f"comma-separated, from {','.join(WORKLOADS)} ('none': skip; default: all)")
    p.add_argument("--realizations", type=_csv("int"), default=None,
                   help="comma-separated ensemble sizes R (default 1,100,1000; 1,32,256 for digits-*)")
    p.add_argument("--peers", type=_csv("str", list(PEERS)), default=None,
                   help=f"implementations to time (default: all of {','.join(PEERS)})")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell; the median is reported")
    p.add_argument("--seconds", type=float, default=None, help="target seconds of each timed run")
    p.add_argument("--out", type=Path, default=None,
                   help="markdown output file; the JSON goes next to it with suffix .json "
                        "(default: bench-results-<device>.md)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--quick", action="store_true",
                   help="fast smoke run: shallow, R=1,4, tiny timings, in-process, no torch.compile")
    p.add_argument("--memory-check", action="store_true",
                   help=f"also run {MEMORY_REALIZATIONS:,} shallow realizations for a few steps in a "
                        "subprocess and report the peak resident memory")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="measure in this process (faster; peak memory is then the process's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in every measurement subprocess (default: torch's). On a machine "
                        "shared with other work, 1 avoids the thread-pool stalls of an oversubscribed CPU")
    p.add_argument("--compile-timeout", type=float, default=120.0,
                   help="seconds allowed for one torch.compile cell before it is skipped")
    return p


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    quick = args.quick
    if args.workloads is None:
        args.workloads = ["shallow"] if quick else list(WORKLOADS)
    if args.realizations is None and quick:
        args.realizations = [1, 4]
    if args.peers is None:
        args.peers = [p for p in PEERS if not (quick and p == "compile")]
    if args.repeats is None:
        args.repeats = 1 if quick else 3
    if args.seconds is None:
        args.seconds = 0.02 if quick else 0.8
    if args.threads is not None and args.threads < 1:
        raise NegdError(f"threads: must be an integer >= 1, got {args.threads}")
    if args.threads is not None and not args.isolate:
        raise NegdError("threads: needs isolated cells (not with --quick or --no-isolate)")
    if args.repeats < 1:
        raise NegdError(f"repeats: must be an integer >= 1, got {args.repeats}")
    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        raise NegdError(f"seconds: must be a positive number, got {args.seconds}")
    if quick:
        args.isolate = False
    if args.out is None:
        args.out = Path(f"bench-results-{args.device}.md")
    _check_writable(args.out)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise NegdError("device: 'cuda' requested but torch sees no CUDA device")
    return args


def _sizes(args: argparse.Namespace, workload: str) -> list[int]:
    """Ensemble sizes of ``workload``: --realizations, else the workload's defaults."""
    return list(args.realizations or get_workload(workload).default_realizations)


def _check_writable(out: Path) -> None:
    """Fail before a long benchmark, not after it, when its two result files cannot be written."""
    import tempfile

    for path in (out, out.with_suffix(".json")):
        if path.is_dir():
            raise NegdError(f"--out: {str(path)!r} is a directory; give a file name such as results.md")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".negd-bench-", suffix=".tmp"):
            pass
    except OSError as e:
        raise NegdError(f"--out: cannot write into {str(out.parent)!r} ({e.strerror or e}); choose a "
                        f"writable folder") from None


def _run(spec: dict, isolate: bool, timeout: float) -> dict:
    """One cell, in a subprocess (isolate) or here."""
    if not isolate:
        from negd.bench.cell import run_cell

        return run_cell(spec)
    cmd = [sys.executable, "-m", "negd.bench.cell", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"skipped: over {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"status": f"failed: exit {out.returncode}: {tail}"}
    return json.loads(lines[-1])


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _rate(cell: dict | None) -> float | None:
    return cell["rate"] if cell and cell.get("status") == "ok" else None


def _cpu_rate(cell: dict | None, limit: dict) -> float | None:
    """A cell's rate per CPU-second times the cores its limit assumes (None if not measured)."""
    if not cell or cell.get("status") != "ok" or cell.get("cpu_rate") is None:
        return None
    return cell["cpu_rate"] * limit.get("cores", 1)


def _best_cpu_rate(cells: dict, names: tuple[str, ...]) -> float | None:
    """The highest rate per CPU-second among the peers ``names`` that ran (None if none did)."""
    rates = [c["cpu_rate"] for n in names if (c := cells.get(n)) and c.get("status") == "ok"
             and c.get("cpu_rate") is not None]
    return max(rates) if rates else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _rows(results: dict, limits: dict, args) -> list[dict]:
    rows = []
    for w in args.workloads:
        for r in _sizes(args, w):
            cells = {p: results.get((w, r, p)) for p in args.peers}
            negd_rate = _rate(cells.get("negd"))
            grad_rate = _rate(cells.get("grad"))
            row = {
                "workload": w, "realizations": r,
                "path": ("fused kernel" if cells["negd"].get("fused") else "torch")
                if cells.get("negd") and cells["negd"].get("status") == "ok" else "-",
                "rates": {p: _rate(c) for p, c in cells.items()},
                "status": {p: (c or {}).get("status", "not run") for p, c in cells.items()},
                "limit": limits.get(w, {}).get("rate"),
                "negd_over_jax": _ratio(negd_rate, _rate(cells.get("jax"))),
                "negd_over_loop": _ratio(negd_rate, _rate(cells.get("loop"))),
                "negd_over_torch": _ratio(negd_rate, _rate(cells.get("torch"))),
                "negd_over_generic": _ratio(negd_rate, _rate(cells.get("generic"))),
                # per CPU-second (the cells run one after another on a shared machine), against the
                # faster of the two forms each JAX peer is written in: the peer that does not flatter
                "negd_over_jax_fastest_cpu": _ratio(_best_cpu_rate(cells, ("negd",)),
                                                    _best_cpu_rate(cells, ("jax", "jax-matmul"))),
                "negd_over_evosax_cpu": _ratio(_best_cpu_rate(cells, ("negd",)),
                                               _best_cpu_rate(cells, ("evosax", "evosax-matmul"))),
                "jax_sum_over_matmul_cpu": _ratio(_best_cpu_rate(cells, ("jax",)),
                                                  _best_cpu_rate(cells, ("jax-matmul",))),
                "evosax_sum_over_matmul_cpu": _ratio(_best_cpu_rate(cells, ("evosax",)),
                                                     _best_cpu_rate(cells, ("evosax-matmul",))),
                # cost per realization-step is 1/rate, so mutation/gradient cost = grad/negd rate
                "mutation_over_gradient_cost": _ratio(grad_rate, negd_rate),
                "fraction_of_limit": _ratio(negd_rate, limits.get(w, {}).get("rate")),
                # the same per CPU-second (x the cores used): on a machine shared with other work the
                # wall rate measures the share of the cores it got, not the kernel
                "fraction_of_limit_cpu": _ratio(_cpu_rate(cells.get("negd"), limits.get(w, {})),
                                                limits.get(w, {}).get("rate")),
                "fraction_of_fma_peak": _ratio(_cpu_rate(cells.get("negd"), limits.get(w, {})),
                                               limits.get(w, {}).get("fma_only_rate")),
                "torch_arithmetic_rate": (limits.get(w, {}).get("torch") or {}).get("rate"),
                "negd_over_torch_arithmetic": _ratio(negd_rate, (limits.get(w, {}).get("torch") or {})
                                                     .get("rate")),
                "negd_peak_rss_mb": (cells.get("negd") or {}).get("peak_rss_mb"),
            }
            rows.append(row)
    return rows


def _targets(rows: list[dict], memory: dict | None) -> list[dict]:
    def row(w, r):
        return next((x for x in rows if x["workload"] == w and x["realizations"] == r), None)

    def judged(name, value, ok):
        return {"target": name, "value": value, "met": None if value is None else bool(ok)}

    out = []
    s = row("shallow", 1000)
    v = s and s["negd_over_jax"]
    out.append(judged(f"shallow R=1000: negd >= {TARGET_JAX_RATIO:g}x JAX", v,
                      v is not None and v >= TARGET_JAX_RATIO))
    v = s and s["negd_over_loop"]
    out.append(judged(f"shallow R=1000: negd >= {TARGET_LOOP_RATIO:g}x authors-style loop", v,
                      v is not None and v >= TARGET_LOOP_RATIO))
    d = row("deep", 100)
    v = d and d.get("fraction_of_limit_cpu")
    out.append(judged(f"deep R=100: negd >= {TARGET_DEEP_LIMIT_FRACTION:g} of the FMA+tanh limit", v,
                      v is not None and v >= TARGET_DEEP_LIMIT_FRACTION))
    v = d and d.get("fraction_of_fma_peak")
    out.append(judged(f"deep R=100: negd >= {TARGET_DEEP_FMA_FRACTION:g} of the FMA peak", v,
                      v is not None and v >= TARGET_DEEP_FMA_FRACTION))
    costs = [x["mutation_over_gradient_cost"] for x in rows if x["mutation_over_gradient_cost"] is not None
             and x["realizations"] >= 100]
    v = max(costs) if costs else None
    out.append(judged(f"mutation step <= {TARGET_MUTATION_COST:g}x gradient step cost (worst cell, R >= 100)",
                      v, v is not None and v <= TARGET_MUTATION_COST))
    m = row("digits-mlp", 32)
    v = m and m.get("fraction_of_limit_cpu")
    out.append(judged(f"digits-mlp R=32: negd >= {TARGET_DIGITS_MLP_LIMIT:g} of the FMA+tanh limit", v,
                      v is not None and v >= TARGET_DIGITS_MLP_LIMIT))
    v = m and m.get("fraction_of_fma_peak")
    out.append(judged(f"digits-mlp R=32: negd >= {TARGET_DIGITS_MLP_FMA_FRACTION:g} of the FMA peak", v,
                      v is not None and v >= TARGET_DIGITS_MLP_FMA_FRACTION))
    v = m and m.get("negd_over_evosax_cpu")
    out.append(judged(f"digits-mlp R=32: negd >= {TARGET_DIGITS_MLP_EVOSAX:g}x evosax Open_ES (fastest form, "
                      "per CPU-s)", v, v is not None and v >= TARGET_DIGITS_MLP_EVOSAX))
    v = m and m["negd_over_generic"]
    out.append(judged(f"digits-mlp R=32: negd >= {TARGET_DIGITS_MLP_GENERIC:g}x the generic ModuleLoss path",
                      v,
                      v is not None and v >= TARGET_DIGITS_MLP_GENERIC))
    c = row("digits-cnn", 32)
    v = c and c["negd_over_loop"]
    out.append(judged(f"digits-cnn R=32: negd >= {TARGET_DIGITS_CNN_LOOP:g}x the per-realization loop", v,
                      v is not None and v >= TARGET_DIGITS_CNN_LOOP))
    v = memory.get("peak_rss_mb") if memory and memory.get("status") == "ok" else None
    out.append(judged(f"shallow R={MEMORY_REALIZATIONS:,}: peak RSS < {MEMORY_LIMIT_MB:g} MB", v,
                      v is not None and v < MEMORY_LIMIT_MB))
    return out


# --quick times each cell for 0.02 s once, in-process: it checks that every path runs, not how fast.
QUICK_WARNING = ("--quick is a smoke test (0.02 s timings, one repeat, in-process): its rates are noise, "
                 "not measurements; run without --quick for figures")


def _markdown(report: dict, args) -> str:
    m = report["machine"]
    lines = ["# negd bench", "", *([f"**{QUICK_WARNING}.**", ""] if args.quick else []),
             f"{m['date']} | {m['cpu']}, {m['cores']} cores ({args.threads or m['torch_threads']} torch "
             "threads) | "
             f"torch {m['torch']} | jax {m['jax'] or 'not installed'} | python {m['python']} | "
             f"device {m['device']} | commit {m['git_commit'] or 'unknown'} | load average at start "
             f"{', '.join(f'{x:.1f}' for x in m.get('load_average_1_5_15', []))}", "",
             "Throughput in realization-steps per second (median of "
             f"{args.repeats} runs of ~{args.seconds:g} s after warm-up). "
             "Ratios are negd's rate over the peer's; mut/grad is the cost of one mutation step "
             "over one gradient-twin step; limit is the machine's arithmetic limit: one core's float32 "
             "FMA peak and the kernel's tanh throughput (C probes compiled with the kernel, measured in "
             "this run) against the FLOPs and tanh's of one realization-step, times the cores used; "
             "frac. of limit is negd's wall rate over the limit, (per CPU-s) the same with negd's rate per "
             "CPU-second x cores (robust to other work on the machine); frac. of FMA peak (per CPU-s too) "
             "counts the multiply-add FLOPs alone; torch arith. is torch's own rate on "
             "the same products (or tanh), a peer, not a limit.", ""]
    for w in args.workloads:
        lines.append(f"- {get_workload(w).describe()}")
    lim = report["limits"]
    for w, info in lim.items():
        if info.get("status") == "ok" and info.get("basis") == "fma+tanh":
            lines.append(f"- limit {w}: FMA peak {info['fma_peak_flops'] / 1e9:.1f} GFLOP/s float32 "
                         f"({info['fma_peak_f64_flops'] / 1e9:.1f} float64) and tanh "
                         f"{info['tanh_per_s'] / 1e9:.2f} G/s per core x {info['cores']} cores, "
                         f"{info['flops_per_step']:,} FLOP + {info['tanh_per_step']:,} tanh per "
                         f"realization-step = {_fmt_rate(info['rate'])}/s; torch on the same arithmetic: "
                         f"{_fmt_rate(info['torch']['rate'])}/s")
        elif info.get("status") == "ok":
            lines.append(f"- limit {w} (torch's rate): {_fmt_rate(info['throughput'])} {info['unit']} / "
                         f"{info['work_per_step']:,} per realization-step = {_fmt_rate(info['rate'])}/s")
    lines.append("")
    header = ["workload", "R", "negd path"] + [PEERS[p] for p in args.peers] + [
        "limit", "negd/JAX", "negd/fastest JAX (per CPU-s)", "JAX sum/@", "negd/evosax (per CPU-s)",
        "evosax sum/@", "negd/loop", "negd/torch", "mut/grad cost", "frac. of limit",
        "frac. of limit (per CPU-s)", "frac. of FMA peak", "negd/torch arith.", "negd peak MB"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for row in report["rows"]:
        cells = [row["workload"], str(row["realizations"]), row["path"]]
        for p in args.peers:
            rate, status = row["rates"][p], row["status"][p]
            cells.append(_fmt_rate(rate) if rate is not None else status.split(":")[0])
        cells += [_fmt_rate(row["limit"]), _fmt_ratio(row["negd_over_jax"]),
                  _fmt_ratio(row["negd_over_jax_fastest_cpu"]), _fmt_ratio(row["jax_sum_over_matmul_cpu"]),
                  _fmt_ratio(row["negd_over_evosax_cpu"]), _fmt_ratio(row["evosax_sum_over_matmul_cpu"]),
                  _fmt_ratio(row["negd_over_loop"]),
                  _fmt_ratio(row["negd_over_torch"]), _fmt_ratio(row["mutation_over_gradient_cost"]),
                  _fmt_ratio(row["fraction_of_limit"]), _fmt_ratio(row["fraction_of_limit_cpu"]),
                  _fmt_ratio(row["fraction_of_fma_peak"]),
                  _fmt_ratio(row["negd_over_torch_arithmetic"]),
                  "-" if row["negd_peak_rss_mb"] is None else f"{row['negd_peak_rss_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Targets", ""]
    for t in report["targets"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        lines.append(f"- {t['target']}: {value} ({mark})")
    warm = report["warmup_s"]
    if warm:
        lines += ["", "## Warm-up (compile / JIT) seconds, excluded from the rates (max over cells)", ""]
        lines += [f"- {PEERS[p]}: {s:.2f} s" for p, s in warm.items()]
    notes = sorted({c["note"] for c in report["cells"] if c.get("note")})
    failures = sorted({f"{c['peer']}: {c['status']}" for c in report["cells"]
                       if c.get("status", "ok") != "ok" and "peer" in c})
    if notes or failures:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes + failures]
    mem = report.get("memory_check")
    if mem:
        lines += ["", "## Memory check", ""]
        if mem.get("status") == "ok":
            lines.append(f"- shallow, R = {mem['realizations']:,}, {mem['steps']} steps in "
                         f"{mem['seconds']:.1f} s ({'fused kernel' if mem['fused'] else 'torch'}): peak RSS "
                         f"{mem['peak_rss_mb']:.0f} MB (process after imports: "
                         f"{mem['baseline_rss_mb']:.0f} MB)")
        else:
            lines.append(f"- {mem.get('status')}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args = _resolve(args)
    except NegdError as err:
        print(f"negd bench: {err}", file=sys.stderr)
        return 2
    if args.quick:
        print(f"negd bench: {QUICK_WARNING}", file=sys.stderr)
    started = time.perf_counter()
    report: dict = {"machine": machine_info(args.device),
                    "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "workloads": {w: get_workload(w).describe() for w in args.workloads}}

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    limits: dict = {}
    results: dict = {}
    cells: list[dict] = []
    compile_broken = False
    for w in args.workloads:
        limits[w] = _run({"kind": "limit", "workload": w, "seconds": max(0.2, args.seconds),
                          "device": args.device, "threads": args.threads},
                         args.isolate, 300)
        log(f"{w}: limit {_fmt_rate(limits[w].get('rate'))} realization-steps/s")
        for r in _sizes(args, w):
            for p in args.peers:
                if p == "compile" and compile_broken:
                    results[(w, r, p)] = {"status": "skipped: torch.compile failed or was too slow earlier"}
                    continue
                spec = {"kind": "peer", "peer": p, "workload": w, "realizations": r,
                        "device": args.device, "seconds": args.seconds, "repeats": args.repeats,
                        "threads": args.threads}
                timeout = args.compile_timeout + 10 * args.seconds * args.repeats if p == "compile" else 1800
                cell = _run(spec, args.isolate, timeout)
                if p == "compile" and cell.get("status") != "ok":
                    compile_broken = True
                results[(w, r, p)] = cell
                cells.append({"workload": w, "realizations": r, "peer": p, **cell})
                log(f"{w} R={r} {p}: {_fmt_rate(_rate(cell))} ({cell.get('status')}, warm-up "
                    f"{cell.get('warmup_s', 0):.2f} s)")
    memory = None
    if args.memory_check:
        memory = _run({"kind": "memory", "realizations": MEMORY_REALIZATIONS, "steps": 2}, True, 1800)
        log(f"memory check: {memory.get('peak_rss_mb', memory.get('status'))} MB")
    rows = _rows(results, limits, args)
    warmup = {}
    for c in cells:
        if c.get("status") == "ok":
            warmup[c["peer"]] = max(warmup.get(c["peer"], 0.0), c["warmup_s"])
    report.update(limits=limits, cells=cells, rows=rows, memory_check=memory,
                  targets=_targets(rows, memory), warmup_s=warmup,
                  elapsed_s=time.perf_counter() - started)
    text = _markdown(report, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    log(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0
