"""Compile the C kernels on first use and load them with ctypes.

The shared library is cached under ``$NEGD_CACHE`` (default ``~/.cache/negd/kernels``) in a
file named by a hash of the source, the compiler flags, the compiler version and the CPU, so a
changed source or machine gets a fresh build and an unchanged one is never rebuilt. Concurrent
builds (parallel pytest workers) are serialized by a file lock, and the library appears under
its final name only by an atomic rename, so a half-written library is never loaded.

Beside the library, ``<library>.sha256`` holds the SHA-256 and size of the bytes the compiler
wrote (written atomically, after the library). The library is verified against it *before*
``dlopen``: a truncated file would otherwise be mapped and kill the process with SIGBUS at the
first call, and a foreign file (another library copied over it) would fail symbol look-up. A
library that fails verification is rebuilt (under the lock); one that cannot be rebuilt or
loaded, or lacks a symbol, disables the kernels with one warning (callers then use torch).

``NEGD_DISABLE_KERNELS=1`` disables the kernels; a missing compiler or a failed build warns once
(one line) and disables them too (callers then use the torch path).

The compiler (``$CC``, split like a shell command: ``CC="ccache gcc"`` works) runs with a time
limit, ``NEGD_BUILD_TIMEOUT`` seconds (default 300; it is killed with its children), and the build
lock is waited for at most a little over twice that (another process's --version and compile); a
library it writes is cached only after it proved non-empty, an ELF file that loads, exports every
symbol bound here and computes tanh right (:mod:`negd.kernels.toolchain`). A cached library that
verifies but will not load is rebuilt once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

from negd.kernels import toolchain

__all__ = ["load_library", "kernels_disabled", "cache_dir", "checksum_path", "verified", "SOURCE", "CFLAGS"]

SOURCE = Path(__file__).with_name("negd_kernels.c")
# Every file the build reads: all of them enter the cache key.
SOURCES = (SOURCE, *(Path(__file__).with_name(name)
                     for name in ("negd_vec_f32.h", "negd_vec_f64.h", "negd_mlp.h", "negd_grad.h")))
# -ffp-contract=off: the random-number code must not fuse a*b+c (bit-identical to negd.rng);
# the forward pass uses explicit FMA intrinsics instead.
CFLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fno-math-errno",
          "-shared", "-fPIC", "-std=gnu11"]

# Every symbol _declare binds: a built library must export all of them before it is cached.
SYMBOLS = ("negd_abi_version", "negd_has_avx2", "negd_normal_rows", "negd_uniform_rows",
           *(f"negd_{kind}_{suffix}" for suffix in ("f32", "f64")
             for kind in ("tanh", "elementwise", "mlp_loss", "fused_ne", "mlp_grad", "fused_langevin",
                          "fma_peak", "tanh_throughput")))

_library: ctypes.CDLL | None = None
_failed = False


def kernels_disabled() -> bool:
    return os.environ.get("NEGD_DISABLE_KERNELS", "").strip() not in ("", "0")


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


def _compiler() -> list[str] | None:
    return toolchain.compiler_command()


def checksum_path(library: Path) -> Path:
    return library.with_name(library.name + ".sha256")


def _fingerprint(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}\n"


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
            proc = toolchain.run_bounded([*cc, *CFLAGS, str(SOURCE), "-o", tmp, "-lm"], name=" ".join(cc))
            if proc.returncode != 0:
                raise RuntimeError(f"{stale}{' '.join(cc)} failed: {toolchain.one_line(proc.stderr)}")
            # exit 0 is not enough: nothing, garbage or a foreign library must never be cached
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
        for probe in ("fma_peak", "tanh_throughput"):
            getattr(lib, f"negd_{probe}_{suffix}").argtypes = [f64]
            getattr(lib, f"negd_{probe}_{suffix}").restype = f64
    lib.negd_normal_rows.argtypes = [u64, p, i64, p, i64, i64, i32, p, ctypes.c_int]
    lib.negd_normal_rows.restype = ctypes.c_int
    lib.negd_uniform_rows.argtypes = [u64, p, i64, p, i64, i32, p]
    lib.negd_uniform_rows.restype = ctypes.c_int


def load_library() -> ctypes.CDLL | None:
    """The compiled kernel library, or None when disabled or when it cannot be built."""
    global _library, _failed
    if kernels_disabled():
        return None
    if _library is not None or _failed:
        return _library
    try:
        cc = _compiler()
        if cc is None:
            raise RuntimeError("no C compiler (gcc) found")
        _library = _load(cc)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
        # AttributeError: a symbol _declare needs is missing (a foreign or outdated library).
        _failed = True
        warnings.warn(f"negd: C kernels unavailable, using the torch path ({toolchain.one_line(str(exc))})",
                      RuntimeWarning, stacklevel=2)
    return _library


def _load(cc: list[str]) -> ctypes.CDLL:
    """dlopen the cached library; one that verifies but does not load or lacks a symbol (cached by
    an older negd, or replaced together with its checksum) is removed and rebuilt once."""
    path = _build(cc)
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
        return lib
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
    return lib
