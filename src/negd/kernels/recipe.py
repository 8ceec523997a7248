"""How the C kernel is compiled: the flags of each target, the compile and link steps, the source digest.

Standard library only, and importing nothing of negd: ``setup.py`` loads this file by path at wheel
build time (when neither torch nor negd is importable) to build the prebuilt libraries, and
:mod:`negd.kernels.build` uses it for the first-use native compile, so both compile the same way.

Targets:

* ``native``: ``-march=native`` (every instruction this CPU has; the opt-in of the last few percent
  and the fallback when no prebuilt library fits), compiled on first use and cached;
* the portable variants shipped in a wheel, picked at load time by the CPU's flags (CPUID as the
  kernel reports it in ``/proc/cpuinfo``): ``x86-64-avx2`` (the baseline plus AVX2 and FMA, the
  kernel's vector path) and ``x86-64`` (the baseline: the kernel's one-lane scalar path), or
  ``aarch64`` (scalar) when the wheel is built there.

OpenMP: the code is compiled with ``-fopenmp`` but the library is linked *without* an OpenMP
runtime (no ``DT_NEEDED`` on libgomp): its ``GOMP_*``/``omp_*`` symbols bind, when it is loaded, to
the runtime torch has already loaded (:mod:`negd.kernels.openmp`). A process never holds two OpenMP
runtimes (two thread pools fighting for the cores), and the prebuilt library does not need a libgomp
on the machine it runs on.

``-ffp-contract=off`` in every target: the random-number code must not fuse a*b+c (it reproduces
:mod:`negd.rng` bit for bit); the forward pass asks for fused multiply-adds explicitly. Within the
AVX2 targets (native on an AVX2 CPU and ``x86-64-avx2``) the results are therefore bit-identical
(tests/test_kernel_prebuilt.py); the scalar targets agree to rounding.

``python -m negd.kernels.recipe DIR`` builds the portable variants of this machine into DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["SOURCE_NAMES", "COMMON_FLAGS", "NATIVE_FLAGS", "VARIANTS", "MANIFEST", "source_digest",
           "compiler", "compiler_version", "compile_library", "portable_variants", "build_prebuilt",
           "fingerprint"]

HERE = Path(__file__).resolve().parent
# Every file the build reads: all of them enter the digest (cache key, prebuilt manifest).
SOURCE_NAMES = ("negd_kernels.c", "negd_vec_f32.h", "negd_vec_f64.h", "negd_mlp.h", "negd_grad.h",
                "negd_env.h")
COMMON_FLAGS = ["-O3", "-fopenmp", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-std=gnu11"]
NATIVE_FLAGS = ["-march=native"]
# variant -> (machines it is built on, its flags, the /proc/cpuinfo flags it needs to run), best first.
VARIANTS: dict[str, tuple[tuple[str, ...], list[str], tuple[str, ...]]] = {
    "x86-64-avx2": (("x86_64", "amd64"), ["-march=x86-64", "-mtune=generic", "-mavx2", "-mfma"],
                    ("avx", "avx2", "fma")),
    "x86-64": (("x86_64", "amd64"), ["-march=x86-64", "-mtune=generic"], ()),
    "aarch64": (("aarch64", "arm64"), ["-march=armv8-a"], ()),
}
MANIFEST = "manifest.json"


def source_digest(directory: Path = HERE) -> str:
    """SHA-256 of the kernel sources in ``directory``, in the order of :data:`SOURCE_NAMES`."""
    h = hashlib.sha256()
    for name in SOURCE_NAMES:
        h.update((directory / name).read_bytes())
    return h.hexdigest()


def fingerprint(data: bytes) -> str:
    """The content of a library's ``.sha256`` file: SHA-256 and size of its bytes."""
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}\n"


def compiler() -> list[str] | None:
    """``$CC`` split like a shell command (``CC="ccache gcc"``), else gcc, else cc on PATH (None if none)."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        return shlex.split(cc)
    found = shutil.which("gcc") or shutil.which("cc")
    return [found] if found else None


def compiler_version(cc: str | list[str]) -> str:
    cc = [cc] if isinstance(cc, str) else list(cc)
    return subprocess.run([*cc, "--version"], capture_output=True, text=True, check=True).stdout


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:300]


def compile_library(cc: str | list[str], flags: list[str], out: Path, directory: Path = HERE,
                    run: Callable[[list[str]], subprocess.CompletedProcess] | None = None) -> None:
    """Compile ``negd_kernels.c`` of ``directory`` with ``flags`` into the shared library ``out``.

    ``cc``: the compiler, one program or a command (``["ccache", "gcc"]``). Two steps, so that
    ``-fopenmp`` reaches the compiler but not the linker (which would add a ``DT_NEEDED`` on the
    compiler's own libgomp). ``run``: how a command runs (default ``subprocess.run``, output captured;
    negd.kernels.build passes a bounded runner). RuntimeError with the compiler's last line on failure.
    """
    cc = [cc] if isinstance(cc, str) else list(cc)
    run = run or (lambda cmd: subprocess.run(cmd, capture_output=True, text=True))
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp) / "negd_kernels.o"
        steps = ([*cc, *COMMON_FLAGS, *flags, "-c", str(directory / SOURCE_NAMES[0]), "-o", str(obj)],
                 [*cc, "-shared", str(obj), "-o", str(out), "-lm"])
        for cmd in steps:
            proc = run(cmd)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cc)} failed: {_last_line(proc.stderr)}")


def portable_variants(machine: str | None = None) -> list[str]:
    """The portable variants built on ``machine`` (default: this one), best first."""
    machine = (machine or platform.machine()).lower()
    return [name for name, (machines, _, _) in VARIANTS.items() if machine in machines]


def build_prebuilt(out_dir: Path, cc: list[str] | None = None) -> dict:
    """Build every portable variant of this machine into ``out_dir`` with checksums and a manifest.

    The manifest records the source digest (a library is used only with the sources it was built
    from), and per variant its file, flags and the CPU flags it needs. RuntimeError when there is no
    compiler, no variant for this machine, or a compile fails.
    """
    cc = cc or compiler()
    if cc is None:
        raise RuntimeError("no C compiler (set CC, or install gcc)")
    names = portable_variants()
    if not names:
        raise RuntimeError(f"no portable kernel variant for machine {platform.machine()!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"sources": source_digest(), "compiler": compiler_version(cc).splitlines()[0],
                "machine": platform.machine(), "variants": {}}
    for name in names:
        _, flags, needs = VARIANTS[name]
        library = out_dir / f"negd_kernels_{name}.so"
        compile_library(cc, flags, library)
        (out_dir / (library.name + ".sha256")).write_text(fingerprint(library.read_bytes()), encoding="ascii")
        manifest["variants"][name] = {"file": library.name, "flags": COMMON_FLAGS + flags,
                                      "cpu_flags": list(needs)}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


if __name__ == "__main__":  # pragma: no cover - a developer's tool
    if len(sys.argv) != 2:
        sys.exit("usage: python -m negd.kernels.recipe OUT_DIR")
    print(json.dumps(build_prebuilt(Path(sys.argv[1])), indent=1))
