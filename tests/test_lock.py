"""negd.experiments.run.lock: one writer per run directory; a refused start removes only its own
empty directory, never one whose lock another process holds (the race of two `negd run --out D`)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

from negd.experiments.run.lock import LOCK_NAME, lock_holder, remove_unstarted, run_dir_lock


def _hold(lock, write_pid: bool = True) -> subprocess.Popen:
    """Another process holding ``lock`` with a bare flock, as negd takes it (pid written or not yet)."""
    write = "f.seek(0); f.truncate(); f.write(f'{os.getpid()} host\\n'); f.flush()\n" if write_pid else ""
    proc = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, time\n"
        f"f = open({str(lock)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n" + write +
        "print('held', flush=True); time.sleep(30)")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_an_unstarted_directory_is_removed_when_nobody_holds_its_lock(tmp_path):
    run_dir = tmp_path / "D"
    with run_dir_lock(run_dir):
        pass
    assert (run_dir / LOCK_NAME).exists()
    remove_unstarted(run_dir)
    assert not run_dir.exists()


def test_a_directory_another_process_is_starting_is_kept(tmp_path):
    run_dir = tmp_path / "D"
    run_dir.mkdir()
    holder = _hold(run_dir / LOCK_NAME, write_pid=False)  # took the lock, wrote nothing yet
    try:
        remove_unstarted(run_dir)
        assert (run_dir / LOCK_NAME).exists()
    finally:
        holder.kill()
        holder.wait()


def test_started_or_used_directories_are_kept(tmp_path):
    for extra in ("config.json", "notes.txt"):
        run_dir = tmp_path / extra
        with run_dir_lock(run_dir):
            pass
        (run_dir / extra).write_text("{}")
        remove_unstarted(run_dir)
        assert (run_dir / extra).exists() and (run_dir / LOCK_NAME).exists()


def test_the_holder_is_named_even_just_after_it_took_the_lock(tmp_path):
    """The holder writes its pid an instant after flock; a reader in that instant waits for it."""
    run_dir = tmp_path / "D"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text("")

    def write_later():
        time.sleep(0.2)
        (run_dir / LOCK_NAME).write_text("4242 somehost\n")

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        assert lock_holder(run_dir) == "pid 4242 on somehost"
    finally:
        writer.join()
    (run_dir / LOCK_NAME).write_text("")
    assert lock_holder(run_dir, wait_seconds=0.05) == "an unknown process"
