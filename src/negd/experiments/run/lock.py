"""An exclusive lock on a run directory, held while a process writes it.

Two writers of one run directory would mix their numbers (two ``negd run --out D`` with other
seeds, or two ``--resume D`` setting each other's arms back). Every writer (``negd run``,
``negd reproduce``, ``--resume``, ``negd report``) therefore holds ``DIR/.lock``:

* the lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on that file: the kernel releases it when the
  holder exits in any way (kill -9 included), so a stale lock of a dead process is simply taken
  over by the next writer, with no pid guessing;
* the holder writes ``pid host`` into the file, so that a second writer's one-line error names
  who holds the directory;
* the file is never deleted (deleting it would let two processes lock two different files of
  the same name);
* within one process the lock is re-entrant (the runner holds it while it builds the report).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from negd.validation import NegdError

__all__ = ["LOCK_NAME", "run_dir_lock", "lock_holder", "remove_unstarted"]

LOCK_NAME = ".lock"

# Resolved run directory -> (open lock file, nesting depth) of the locks this process holds.
_held: dict[Path, list] = {}


def lock_holder(run_dir: Path, wait_seconds: float = 1.0) -> str:
    """``pid N on HOST`` as written by the holder of ``run_dir``'s lock ("unknown process" if unreadable).

    A holder writes its pid just after taking the lock: a file still empty is read again for up to
    ``wait_seconds`` rather than naming an unknown process for that instant."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            text = (Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8", errors="replace").split()
        except OSError:
            return "an unknown process"
        if len(text) >= 2 and text[0].isdigit():
            return f"pid {text[0]} on {text[1][:100]}"
        if text or time.monotonic() >= deadline:
            return "an unknown process"
        time.sleep(0.01)


def remove_unstarted(run_dir: Path, started: str = "config.json") -> None:
    """Remove ``run_dir`` if it holds nothing but its lock file (no ``started`` file) and no process
    holds that lock: a start refused or failed before writing leaves no empty directory behind. The
    directory of another writer, which took the lock and has not written yet, is never touched."""
    import fcntl

    run_dir = Path(run_dir)
    lock = run_dir / LOCK_NAME
    if not run_dir.is_dir() or (run_dir / started).exists() or not lock.is_file() or lock.is_symlink():
        return
    with open(lock, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process is starting a run here
        if (run_dir / started).exists() or any(p.name != LOCK_NAME for p in run_dir.iterdir()):
            return
        lock.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:  # another process wrote into it since: it is theirs now
        pass


@contextmanager
def run_dir_lock(run_dir: Path) -> Iterator[None]:
    """Hold the write lock of ``run_dir`` (created if needed); NegdError if another process holds it."""
    import fcntl

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    handle = open(run_dir / LOCK_NAME, "a+", encoding="utf-8")  # noqa: SIM115 - held across the yield
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NegdError(f"run directory {str(run_dir)!r} is being written by {lock_holder(run_dir)} "
                            f"(lock {LOCK_NAME}); wait for it to finish or stop it, then retry") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {socket.gethostname()}\n")
        handle.flush()
        _held[key] = [handle, 1]
        try:
            yield
        finally:
            del _held[key]
            # Unlocked by close; the pid stays in the file but means nothing without the flock.
    finally:
        handle.close()
