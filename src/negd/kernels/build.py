"""Load the C kernel with ctypes: a prebuilt library shipped in the wheel, or one compiled on first use.

Which library (``NEGD_KERNEL``):

* ``auto`` (default): the prebuilt library of the best portable variant this CPU runs
  (``negd/kernels/prebuilt/``, built at wheel build time by ``setup.py``; see
  :mod:`negd.kernels.recipe`), else the first-use native compile, else the torch path;
* ``native``: the first-use ``-march=native`` compile (the last few percent), else the prebuilt one;
* ``prebuilt``: only the prebuilt library.

An editable install (``pip install -e .``) ships no prebuilt library and compiles on first use.

The native library is cached under ``$NEGD_CACHE`` (default ``~/.cache/negd/kernels``) in a
file named by a hash of the source, the compiler flags, the compiler version and the CPU, so a
changed source or machine gets a fresh build and an unchanged one is never rebuilt. Concurrent
builds (parallel pytest workers) are serialized by a file lock, and the library appears under
its final name only by an atomic rename, so a half-written library is never loaded.

Beside every library (cached or prebuilt), ``<library>.sha256`` holds the SHA-256 and size of its
bytes (written atomically, after the library). The library is verified against it *before*
``dlopen``: a truncated file would otherwise be mapped and kill the process with SIGBUS at the
first call, and a foreign file (another library copied over it) would fail symbol look-up. A
cached library that fails verification is rebuilt (under the lock); a prebuilt one built from other
sources than those installed beside it is not used. When no library can be built or loaded (or one
lacks a symbol), the kernels are disabled with one warning (callers then use torch).

OpenMP: the library binds to torch's runtime (:mod:`negd.kernels.openmp`), never a second one.

The compiler (``$CC``, split like a shell command: ``CC="ccache gcc"`` works) runs with a time
limit, ``NEGD_BUILD_TIMEOUT`` seconds (default 300; it is killed with its children), and the build
lock is waited for at most a little over twice that (another process's --version and compile); a
library it writes is cached only after it proved non-empty, an ELF file that loads, exports every
symbol bound here and computes tanh right (:mod:`negd.kernels.toolchain`). A cached library that
verifies but will not load is rebuilt once.

``NEGD_DISABLE_KERNELS=1`` disables the kernels. :func:`kernel_info` says which library runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

from negd.kernels import openmp, recipe, toolchain

__all__ = ["load_library", "kernels_disabled", "cache_dir", "checksum_path", "verified", "SOURCE", "CFLAGS",
           "kernel_mode", "kernel_info", "cpu_flags", "prebuilt_variant", "PREBUILT_DIR", "KERNEL_MODES"]

SOURCE = Path(__file__).with_name("negd_kernels.c")
SOURCES = tuple(Path(__file__).with_name(name) for name in recipe.SOURCE_NAMES)
# The native target's compile flags (see negd.kernels.recipe: no OpenMP runtime is linked).
CFLAGS = recipe.COMMON_FLAGS + recipe.NATIVE_FLAGS
PREBUILT_DIR = Path(__file__).with_name("prebuilt")
KERNEL_MODES = ("auto", "native", "prebuilt")

# Every symbol _declare binds: a built library must export all of them before it is cached.
SYMBOLS = ("negd_abi_version", "negd_has_avx2", "negd_normal_rows", "negd_uniform_rows",
           *(f"negd_{kind}_{suffix}" for suffix in ("f32", "f64")
             for kind in ("tanh", "elementwise", "mlp_loss", "fused_ne", "mlp_grad", "fused_langevin",
                          "fma_peak", "tanh_throughput", "env_rollout", "env_step")))

_library: ctypes.CDLL | None = None
_failed = False
_info: dict = {}


def kernels_disabled() -> bool:
    return os.environ.get("NEGD_DISABLE_KERNELS", "").strip() not in ("", "0")


def kernel_mode() -> str:
    """``NEGD_KERNEL``: auto (default), native or prebuilt; anything else is an error."""
    mode = os.environ.get("NEGD_KERNEL", "").strip().lower() or "auto"
    if mode not in KERNEL_MODES:
        from negd.validation import NegdError

        raise NegdError(f"NEGD_KERNEL: must be one of {', '.join(KERNEL_MODES)}, got {mode!r}")
    return mode


def cache_dir() -> Path:
    root = os.environ.get("NEGD_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "negd"
    return base / "kernels"


def _cpu_signature() -> str:
    """CPU model and flags: -march=native code must not be reused on a different CPU."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() + platform.machine()
    keep = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the OS reports them (CPUID filtered by what the OS enables, e.g.
    AVX state saving); empty where there is no /proc/cpuinfo (then only the baseline variant runs)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _compiler() -> list[str] | None:
    return toolchain.compiler_command()


def checksum_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


_fingerprint = recipe.fingerprint


def verified(library: Path) -> bool:
    """Whether ``library`` holds exactly the bytes its checksum file records (False if either is
    missing), and those bytes can be a library at all (an ELF file; an empty one never is)."""
    try:
        expected = checksum_path(library).read_text(encoding="ascii")
        data = library.read_bytes()
        return data[:4] == toolchain.ELF_MAGIC and _fingerprint(data) == expected
    except (OSError, UnicodeDecodeError):
        return False


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _build(cc: list[str]) -> Path:
    """The verified cached library for this source, compiler and CPU, built (or rebuilt) if needed."""
    source = b"".join(path.read_bytes() for path in SOURCES)
    proc = toolchain.run_bounded([*cc, "--version"], name=f"{' '.join(cc)} --version")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cc)} --version failed: {toolchain.one_line(proc.stderr)}")
    version = proc.stdout
    digest = hashlib.sha256(source + " ".join(CFLAGS).encode() + version.encode()
                            + _cpu_signature().encode()).hexdigest()[:20]
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"negd_kernels_{digest}.so"
    if verified(target):
        return target
    lock_path = directory / f"negd_kernels_{digest}.lock"
    with open(lock_path, "w") as lock:
        # another process may be building the same library (bounded: it may hang, or be stopped)
        limit = toolchain.build_timeout()
        toolchain.acquire(lock, 2 * limit + min(30.0, limit), str(lock_path))  # its --version and compile
        if verified(target):
            return target
        # A library that exists here is truncated, replaced, or from before checksums: never dlopen it.
        stale = f"cached {target.name} failed verification and " if target.exists() else ""
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=directory)
        os.close(fd)
        try:
            try:
                recipe.compile_library(cc, recipe.NATIVE_FLAGS, Path(tmp),
                                       run=lambda cmd: toolchain.run_bounded(cmd, name=" ".join(cc)))
            except RuntimeError as exc:
                raise RuntimeError(f"{stale}{exc}") from None
            # exit 0 is not enough: nothing, garbage or a foreign library must never be cached
            _bind_openmp()  # the library names no OpenMP runtime: torch's must be global to load it
            toolchain.check_library(Path(tmp), SYMBOLS)
            built = Path(tmp).read_bytes()
            os.replace(tmp, target)
            _atomic_write(checksum_path(target), _fingerprint(built).encode("ascii"))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if not verified(target):  # e.g. the cache is on a disk that does not keep what it was given
            raise RuntimeError(f"the library just built at {target} does not match its checksum")
        if stale:
            warnings.warn(f"negd: {stale}was rebuilt (cache {directory})", RuntimeWarning, stacklevel=3)
    return target


def _bind_openmp() -> str:
    """Make torch's OpenMP runtime global (negd.kernels.openmp) before a kernel library is opened."""
    import torch  # noqa: F401 - its OpenMP runtime must be in the process before the kernel is opened

    return openmp.bind()


def prebuilt_variant(directory: Path | None = None, flags: set[str] | None = None) -> tuple[str, Path]:
    """The best prebuilt variant in ``directory`` that this CPU runs: (name, verified library path).

    RuntimeError saying why there is none: no prebuilt libraries (an editable install), built from
    other sources than those installed, none this CPU runs, or a file failing its checksum.
    """
    directory = PREBUILT_DIR if directory is None else directory
    try:
        manifest = json.loads((directory / recipe.MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeError("no prebuilt kernel in this install") from None
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"prebuilt kernel manifest unreadable ({exc})") from None
    if manifest.get("sources") != recipe.source_digest(SOURCE.parent):
        raise RuntimeError("the prebuilt kernel was built from other sources than those installed")
    flags = cpu_flags() if flags is None else flags
    for name, entry in manifest.get("variants", {}).items():  # best first (recipe.VARIANTS' order)
        if set(entry.get("cpu_flags", ())) <= flags:
            library = directory / entry["file"]
            if not verified(library):
                raise RuntimeError(f"prebuilt {library.name} failed verification")
            return name, library
    raise RuntimeError("no prebuilt kernel variant runs on this CPU")


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32, u64, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32, ctypes.c_uint64, ctypes.c_double
    lib.negd_abi_version.restype = ctypes.c_int
    lib.negd_has_avx2.restype = ctypes.c_int
    for suffix in ("f32", "f64"):
        getattr(lib, f"negd_tanh_{suffix}").argtypes = [p, p, i64]
        getattr(lib, f"negd_tanh_{suffix}").restype = None
        getattr(lib, f"negd_elementwise_{suffix}").argtypes = [ctypes.c_int, p, p, i64]
        getattr(lib, f"negd_elementwise_{suffix}").restype = ctypes.c_int
        getattr(lib, f"negd_mlp_loss_{suffix}").argtypes = [p, i64, i64, p, p, p, i64, i64, p, ctypes.c_int]
        getattr(lib, f"negd_mlp_loss_{suffix}").restype = ctypes.c_int
        getattr(lib, f"negd_fused_ne_{suffix}").argtypes = [p, i64, i64, p, p, p, p, p, p, p, p, p, i64, i64,
                                                            u64, i64, i64, p, i64, f64, ctypes.c_int]
        getattr(lib, f"negd_fused_ne_{suffix}").restype = ctypes.c_int
        getattr(lib, f"negd_mlp_grad_{suffix}").argtypes = [p, i64, i64, p, p, p, i64, i64, p, p,
                                                            ctypes.c_int]
        getattr(lib, f"negd_mlp_grad_{suffix}").restype = ctypes.c_int
        getattr(lib, f"negd_fused_langevin_{suffix}").argtypes = [p, i64, i64, p, p, p, p, p, p, i64, i64,
                                                                  u64, i64, i64, p, i64, p, i64, i32,
                                                                  ctypes.c_int]
        getattr(lib, f"negd_fused_langevin_{suffix}").restype = ctypes.c_int
        getattr(lib, f"negd_env_rollout_{suffix}").argtypes = [ctypes.c_int, p, p, i64, i64, p, i64, p, p,
                                                               ctypes.c_int]
        getattr(lib, f"negd_env_rollout_{suffix}").restype = ctypes.c_int
        getattr(lib, f"negd_env_step_{suffix}").argtypes = [ctypes.c_int, p, p, i64, p, p, p]
        getattr(lib, f"negd_env_step_{suffix}").restype = ctypes.c_int
        for probe in ("fma_peak", "tanh_throughput"):
            getattr(lib, f"negd_{probe}_{suffix}").argtypes = [f64]
            getattr(lib, f"negd_{probe}_{suffix}").restype = f64
    lib.negd_normal_rows.argtypes = [u64, p, i64, p, i64, i64, i32, p, ctypes.c_int]
    lib.negd_normal_rows.restype = ctypes.c_int
    lib.negd_uniform_rows.argtypes = [u64, p, i64, p, i64, i32, p]
    lib.negd_uniform_rows.restype = ctypes.c_int


def _native() -> tuple[str, ctypes.CDLL, Path]:
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (gcc) found")
    lib, path = _load(cc)
    return "native", lib, path


def _open(path: Path) -> tuple[ctypes.CDLL, str]:
    """dlopen ``path`` after binding torch's OpenMP runtime; the library and the runtime it reaches."""
    runtime = _bind_openmp()
    lib = ctypes.CDLL(str(path))
    _declare(lib)
    return lib, runtime


def _prebuilt() -> tuple[str, ctypes.CDLL, Path]:
    name, path = prebuilt_variant()
    return f"prebuilt:{name}", _open(path)[0], path


def load_library() -> ctypes.CDLL | None:
    """The compiled kernel library, or None when disabled or when it cannot be built or loaded."""
    global _library, _failed, _info
    if kernels_disabled():
        _info = {"kind": "torch", "reason": "NEGD_DISABLE_KERNELS is set"}
        return None
    if _library is not None or _failed:
        return _library
    mode = kernel_mode()
    order = {"auto": (_prebuilt, _native), "native": (_native, _prebuilt), "prebuilt": (_prebuilt,)}[mode]
    reasons = []
    for source in order:
        try:
            kind, lib, path = source()
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
            # AttributeError: a symbol _declare needs is missing (a foreign or outdated library).
            reasons.append(toolchain.one_line(str(exc)))
            continue
        _library = lib
        _info = {"kind": kind.split(":")[0], "variant": kind.split(":")[-1], "library": str(path),
                 "mode": mode, "avx2": bool(lib.negd_has_avx2()), "openmp": openmp.resolved() or "",
                 "openmp_runtimes": openmp.loaded_runtimes(), "abi": int(lib.negd_abi_version())}
        if reasons and mode == "native":
            warnings.warn(f"negd: NEGD_KERNEL=native: {reasons[0]}; using the prebuilt kernel",
                          RuntimeWarning, stacklevel=2)
        return _library
    _failed = True
    _info = {"kind": "torch", "mode": mode, "reason": "; ".join(reasons)}
    warnings.warn(f"negd: C kernels unavailable, using the torch path ({'; '.join(reasons)})", RuntimeWarning,
                  stacklevel=2)
    return None


def kernel_info() -> dict:
    """Which kernel runs: ``kind`` (prebuilt, native or torch), ``variant`` (x86-64-avx2, x86-64,
    native, ...), ``library``, ``avx2`` (its vector path), ``openmp`` (the runtime its OpenMP calls
    reach) and, for torch, ``reason``. Loads the library if not yet loaded."""
    load_library()
    return dict(_info)


def _load(cc: list[str]) -> tuple[ctypes.CDLL, Path]:
    """dlopen the cached library (and its path); one that verifies but does not load or lacks a symbol
    (cached by an older negd, or replaced together with its checksum) is removed and rebuilt once."""
    _bind_openmp()
    path = _build(cc)
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
        return lib, path
    except (OSError, AttributeError) as exc:
        reason = toolchain.one_line(str(exc)) or type(exc).__name__
    for stale in (checksum_path(path), path):
        stale.unlink(missing_ok=True)
    try:
        rebuilt = _build(cc)
        # dlopen by another spelling of the path: the loader would otherwise return the unusable
        # library it still holds under this name (it matches names before files)
        lib = ctypes.CDLL(os.path.join(str(rebuilt.parent), ".", rebuilt.name))
        _declare(lib)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
        raise RuntimeError(f"cached {path.name} is not a usable kernel library ({reason}) and rebuilding "
                           f"it failed: {toolchain.one_line(str(exc))}") from None
    warnings.warn(f"negd: cached {path.name} was not a usable kernel library ({reason}) and was rebuilt",
                  RuntimeWarning, stacklevel=3)
    return lib, rebuilt
