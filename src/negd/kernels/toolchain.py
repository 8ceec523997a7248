"""Running the C compiler with bounds, and checking what it wrote, for :mod:`negd.kernels.build`.

Issue 19, class 4: a compiler that hangs hung negd (and every process waiting on the build lock); a
compiler that exits 0 without writing a library left an empty file whose checksum matched, trusted
from then on; ``CC="ccache gcc"`` (a command with arguments) was run as one program name and failed.
Here:

* :func:`compiler_command`: ``$CC`` split as a shell would (``shlex``), else gcc, else cc;
* :func:`run_bounded`: a compiler run in its own process group, killed with all its children
  (cc1, as, ld) after ``NEGD_BUILD_TIMEOUT`` seconds (default 300);
* :func:`acquire`: the build lock, waited for a bounded time (the caller's: a little over twice that);
* :func:`check_library`: a freshly built library is non-empty, an ELF shared object, loads, exports
  every symbol the bindings declare and computes a few known values, before it is cached.

Every failure is a ``RuntimeError`` of one line; the caller falls back to the torch path.
"""

from __future__ import annotations

import ctypes
import math
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

__all__ = ["compiler_command", "build_timeout", "run_bounded", "acquire", "check_library", "one_line"]

DEFAULT_TIMEOUT_S = 300.0
ELF_MAGIC = b"\x7fELF"


def one_line(text: str, limit: int = 300) -> str:
    """The last non-empty line of ``text`` (a compiler's error is its last line), at most ``limit`` chars."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:limit]


def compiler_command() -> list[str] | None:
    """``$CC`` as an argument list (``CC="ccache gcc"`` works), else gcc, else cc; None if none."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        try:
            parts = shlex.split(cc)
        except ValueError as exc:
            raise RuntimeError(f"CC={cc!r} cannot be parsed as a command ({exc})") from None
        if not parts:
            raise RuntimeError(f"CC={cc!r} names no command")
        return parts
    found = shutil.which("gcc") or shutil.which("cc")
    return [found] if found else None


def build_timeout() -> float:
    """``NEGD_BUILD_TIMEOUT`` in seconds (default 300): the most one compiler run may take."""
    raw = os.environ.get("NEGD_BUILD_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise RuntimeError(f"NEGD_BUILD_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return value


def run_bounded(cmd: list[str], timeout: float | None = None, name: str | None = None
                ) -> subprocess.CompletedProcess:
    """Run ``cmd`` with its output captured; kill it and every process it started (its session)
    after ``timeout`` seconds (:func:`build_timeout`) and raise RuntimeError naming it ``name``."""
    timeout = build_timeout() if timeout is None else timeout
    name = cmd[0] if name is None else name
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    except OSError as exc:
        raise RuntimeError(f"cannot run {shlex.join(cmd[:2])}: {exc.strerror or exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise RuntimeError(f"{name} did not finish in {timeout:g} s and was killed "
                           f"(NEGD_BUILD_TIMEOUT sets the limit)") from None
    except BaseException:  # KeyboardInterrupt: never leave a compiler running
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def acquire(lock: IO, timeout: float, what: str) -> None:
    """Take an exclusive ``flock`` on ``lock``, waiting at most ``timeout`` seconds (RuntimeError)."""
    import fcntl

    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise RuntimeError(f"another process has held the build lock {what} for over {timeout:g} s "
                                   f"(NEGD_BUILD_TIMEOUT sets the limit)") from None
            time.sleep(delay)
            delay = min(1.0, delay * 2)


def check_library(path: Path, symbols: Iterable[str],
                  loader: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> ctypes.CDLL:
    """The loaded library at ``path`` if it is a non-empty ELF file that loads, exports every one of
    ``symbols`` and whose ``negd_tanh_f64`` gives tanh of a few values; else RuntimeError saying what
    is wrong. (Before caching a build: a compiler that exits 0 may still have written nothing.)"""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        size = path.stat().st_size
    except OSError as exc:
        raise RuntimeError(f"no library was written at {path} ({exc.strerror or exc})") from None
    if size == 0:
        raise RuntimeError("the compiler exited 0 but wrote an empty library")
    if head != ELF_MAGIC:
        raise RuntimeError(f"the compiler wrote a {size}-byte file that is not a shared library "
                           f"(no ELF header)")
    try:
        lib = loader(str(path))
    except OSError as exc:
        raise RuntimeError(f"the library just built does not load ({one_line(str(exc))})") from None
    missing = [name for name in symbols if not hasattr(lib, name)]
    if missing:
        raise RuntimeError(f"the library just built lacks {', '.join(missing[:3])}"
                           f"{' and more' if len(missing) > 3 else ''}")
    values = [0.0, 0.5, -1.25, 3.0, 20.0, -0.001, 1e-8, -7.5]
    array = ctypes.c_double * len(values)
    x, y = array(*values), array()
    fn = lib.negd_tanh_f64
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64], None
    fn(ctypes.cast(x, ctypes.c_void_p), ctypes.cast(y, ctypes.c_void_p), len(values))
    if not all(math.isclose(got, math.tanh(v), rel_tol=1e-12, abs_tol=1e-15) for got, v in zip(y, values)):
        raise RuntimeError("the library just built computes wrong values (tanh self-check failed)")
    return lib
