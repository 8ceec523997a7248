"""Speed of the prebuilt (wheel) kernel against the first-use native build, side by side.

    python benchmarks/prebuilt_speed.py [--rounds N]

Copies this tree's ``src/`` to a temporary directory, builds the portable variants into it as
``setup.py`` does (negd.kernels.recipe.build_prebuilt), then runs the probe of the perf guard
(``../shared/perf-guard.py``: neuroevolution rates of the shallow, deep and digits MLPs, one thread,
CPU time, best of rounds) alternating NEGD_KERNEL=native, =prebuilt (the x86-64-avx2 variant on an
AVX2 CPU) and the baseline x86-64 variant (forced by hiding the CPU's AVX2 from the variant choice).
Prints rates and ratios, and writes benchmarks/results-prebuilt-speed.{md,json} with machine info.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT.parent / "shared" / "perf-guard.py"
# The baseline variant: cpu_flags() reports no AVX2 (patched in the probe's process only).
FORCE_BASELINE = "import negd.kernels.build as _b; _b.cpu_flags = lambda: set()\n"


def guard_probe() -> str:
    text = GUARD.read_text()
    return textwrap.dedent(re.search(r"PROBE = textwrap.dedent\(r'''(.*?)'''\)", text, re.S).group(1))


def run_probe(src: Path, probe: str, mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1",
           "NEGD_KERNEL": "native" if mode == "native" else "prebuilt"}
    code = (FORCE_BASELINE if mode == "x86-64" else "") + probe
    code += ("\nfrom negd.kernels.build import kernel_info; import sys\n"
             "print(kernel_info(), file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if r.returncode:
        raise RuntimeError(r.stderr.strip()[-500:])
    info = r.stderr.strip().splitlines()[-1]
    return json.loads(r.stdout.strip().splitlines()[-1]) | {"_info": info}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (best of; default 2)")
    args = parser.parse_args()
    if not GUARD.exists():
        print(f"needs the perf guard at {GUARD}")
        return 1
    probe = guard_probe()
    modes = ("native", "prebuilt", "x86-64")
    best: dict[str, dict[str, float]] = {m: {} for m in modes}
    infos = {}
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "prebuilt"))
        sys.path.insert(0, str(src))
        from negd.kernels import recipe

        manifest = recipe.build_prebuilt(src / "negd" / "kernels" / "prebuilt")
        for _ in range(args.rounds):
            for mode in modes:
                rates = run_probe(src, probe, mode)
                infos[mode] = rates.pop("_info")
                for k, v in rates.items():
                    if v is not None:
                        best[mode][k] = max(best[mode].get(k, 0.0), v)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    lines = [f"# Prebuilt kernel vs native build ({cpu}, {os.cpu_count()} cores, one thread, "
             f"best of {args.rounds} alternating rounds)", "",
             f"Compiler: {manifest['compiler']}. Rates: realization-steps per CPU-second "
             "(perf-guard probe).", "",
             "| workload | native (-march=native) | prebuilt x86-64-avx2 | ratio | prebuilt x86-64 | ratio |",
             "|---|---:|---:|---:|---:|---:|"]
    for k in best["native"]:
        n, p, b = best["native"][k], best["prebuilt"].get(k), best["x86-64"].get(k)
        lines.append(f"| {k} | {n:.0f} | {p:.0f} | {p / n:.3f} | {b:.0f} | {b / n:.3f} |")
    lines += ["", "Libraries:", *(f"- {m}: {infos[m]}" for m in modes)]
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results-prebuilt-speed.md").write_text(text)
    (ROOT / "benchmarks" / "results-prebuilt-speed.json").write_text(
        json.dumps({"cpu": cpu, "rounds": args.rounds, "rates": best, "libraries": infos,
                    "compiler": manifest["compiler"]}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
