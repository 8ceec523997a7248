"""One OpenMP runtime per process: the kernel binds to the one torch has loaded.

The kernel library is linked without an OpenMP runtime (:mod:`negd.kernels.recipe`); its
``GOMP_*``/``omp_*`` symbols are resolved when it is loaded, from the libraries in the global symbol
scope. torch loads its own libgomp (``torch/lib/libgomp.so.1`` in the Linux wheels, as a dependency
of ``libtorch_global_deps.so``, loaded globally). :func:`bind` makes sure that runtime is in the
global scope (``dlopen(path, RTLD_NOLOAD | RTLD_GLOBAL)`` of the very file already mapped: a
promotion, never a second load) before the kernel is opened. Only when the process has no OpenMP
runtime at all is one loaded (the system's ``libgomp.so.1``), and then it is the only one.

Why it matters: two runtimes in one process (the compiler's libgomp beside torch's) mean two thread
pools, each sized to all the cores, competing for them; the first-use build used to link the
compiler's libgomp and got torch's only because both carry the soname ``libgomp.so.1``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

__all__ = ["RUNTIME_PREFIXES", "loaded_runtimes", "bind", "resolved"]

RUNTIME_PREFIXES = ("libgomp", "libiomp", "libomp")  # GNU, Intel (exports GOMP_* too), LLVM


def loaded_runtimes() -> list[str]:
    """Paths of the distinct OpenMP runtime files mapped into this process (Linux; [] elsewhere)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    seen: dict[tuple[str, str], str] = {}
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and os.path.basename(fields[5]).startswith(RUNTIME_PREFIXES):
            seen.setdefault((fields[3], fields[4]), fields[5])  # (device, inode): one file, one entry
    return sorted(set(seen.values()))


def _torch_first(runtimes: list[str]) -> list[str]:
    """torch's own runtime first: other packages (scikit-learn ships its own libgomp) may have mapped
    theirs too, privately; the kernel must share torch's thread pool."""
    try:
        import torch

        home = os.path.dirname(os.path.realpath(torch.__file__))
    except ImportError:  # pragma: no cover - negd needs torch
        return runtimes
    return sorted(runtimes, key=lambda path: not os.path.realpath(path).startswith(home + os.sep))


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def resolved(symbol: str = "GOMP_parallel") -> str | None:
    """The file that defines ``symbol`` in the global scope: where the kernel's OpenMP calls go (None
    when no global library defines it, or where dladdr is unavailable)."""
    try:
        scope = ctypes.CDLL(None)
        address = ctypes.cast(getattr(scope, symbol), ctypes.c_void_p).value
        info = _DlInfo()
        if not scope.dladdr(ctypes.c_void_p(address), ctypes.byref(info)) or not info.dli_fname:
            return None
        return os.path.realpath(info.dli_fname.decode())
    except (AttributeError, OSError, TypeError):
        return None


def bind() -> str:
    """Put an OpenMP runtime in the global symbol scope for the kernel; the path of the one its calls
    will reach (:func:`resolved`), torch's whenever torch has one.

    torch must be imported first (the caller's job). OSError if no runtime can be found.
    """
    runtimes = _torch_first(loaded_runtimes())
    noload = getattr(os, "RTLD_NOLOAD", 0)
    for path in runtimes:
        try:
            ctypes.CDLL(path, mode=os.RTLD_GLOBAL | noload)
            return resolved() or path
        except OSError:
            continue
    if runtimes:
        raise OSError(f"the OpenMP runtime torch loaded ({runtimes[0]}) cannot be made global")
    name = ctypes.util.find_library("gomp") or "libgomp.so.1"  # no runtime in the process: load the first
    ctypes.CDLL(name, mode=os.RTLD_GLOBAL)
    return resolved() or name
