"""Fault injection on `negd run` (issue 11): concurrent writers, kill -9 at random moments, SIGTERM
during the report. Every fault must leave a run directory that resumes to numbers identical, bit
for bit, to an uninterrupted run.

The CI cases are small (a few kills). The soak (50 kills with the kernel on, 50 with it off):

    NEGD_SOAK=1 PYTHONPATH=src python -m pytest -q tests/test_faults.py -k soak
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from negd import kernels as negd_kernels
from negd.cli import main
from negd.experiments.config.schema import load_config
from negd.experiments.run.runner import resume_experiment, run_experiment
from tests.runtools import FAULT_YAML, assert_same_numbers, fault_yaml, negd_env, run, start

SOAK_KILLS = 50


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "fault.yaml"
    path.write_text(fault_yaml(negd_kernels.available()))
    return path


def _reference(tmp_path: Path, config_file: Path, monkeypatch, kernels: bool = True, seed: int | None = None):
    """An uninterrupted run in this process (same numbers as a subprocess: counter-based RNG)."""
    if not kernels:
        monkeypatch.setenv("NEGD_DISABLE_KERNELS", "1")
    config = load_config(config_file)
    if seed is not None:
        config = config.with_overrides(seed=seed)
    out = tmp_path / f"reference-{kernels}-{seed}"
    run_experiment(config, out, progress=False, report=False)
    monkeypatch.delenv("NEGD_DISABLE_KERNELS", raising=False)
    return out


def _one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("negd: error: "), lines
    return lines[0]


def test_two_concurrent_writers_exactly_one_proceeds(tmp_path, config_file, monkeypatch):
    """Defect 1: `negd run a.yaml --out D & negd run b.yaml --out D` (seeds 3 and 4) both ran into D."""
    other = tmp_path / "b.yaml"
    other.write_text(FAULT_YAML.replace("seed: 3", "seed: 4"))
    out = tmp_path / "D"
    env = negd_env()
    procs = [start(["run", str(path), "--out", str(out)], env, tmp_path) for path in (config_file, other)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    codes = [rc for rc, _, _ in results]
    assert sorted(code == 0 for code in codes) == [False, True], results
    loser = codes.index(next(c for c in codes if c != 0))
    line = _one_error_line(results[loser][2])
    assert "being written by pid" in line or "not empty" in line
    winner_seed = 3 if loser == 1 else 4
    assert json.loads((out / "config.json").read_text())["seed"] == winner_seed
    assert_same_numbers(out, _reference(tmp_path, config_file, monkeypatch, seed=winner_seed))


def test_second_resume_refused_while_a_writer_holds_the_lock(tmp_path, config_file, monkeypatch, capsys):
    """Defect 1: two `--resume D` at once set each other's arms back. A holder (here a bare flock, as
    negd's lock takes it) makes `--resume` fail with one line naming its pid."""
    out = _reference(tmp_path, config_file, monkeypatch)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, socket, sys, time\n"
        f"f = open({str(out / '.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.seek(0); f.truncate(); f.write(f'{os.getpid()} {socket.gethostname()}\\n'); f.flush()\n"
        "print('held', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for argv in (["run", "--resume", str(out)], ["report", str(out)]):
            assert main(argv) == 2
            line = _one_error_line(capsys.readouterr().err)
            assert f"being written by pid {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    # The holder died (as after kill -9): its stale lock is taken over.
    assert resume_experiment(out, progress=False, report=False).state == "complete"


def _status_mtime(out: Path) -> int:
    try:
        return (out / "status.json").stat().st_mtime_ns
    except OSError:
        return 0


def _phase(out: Path, started: int) -> str:
    """Where the process is: start-up (has not written status.json yet), computing, or report."""
    if _status_mtime(out) <= started:
        return "start-up"
    try:
        status = json.loads((out / "status.json").read_text())
    except (OSError, ValueError):
        return "computing"
    return "report" if status.get("report") == "pending" else "computing"


def _kill_and_resume(tmp_path: Path, config_file: Path, kills: int, kernels: bool, rng: random.Random,
                     name: str, max_delay: float, phases: dict | None = None) -> tuple[Path, int]:
    """Start `negd run`, kill -9 it at a random moment, `--resume`, repeat; finish uninterrupted.

    One kill in four lands anywhere from the start (start-up included); the others land a random
    time (0 to ``max_delay`` s) after the process first wrote status.json, i.e. while it computes,
    writes snapshots or builds the report. Returns the run directory and the number of kills that
    landed (the process was still running); ``phases`` counts where they landed."""
    phases = {} if phases is None else phases
    out = tmp_path / name
    env = negd_env(kernels)
    landed = 0
    args = ["run", str(config_file), "--out", str(out)]
    for k in range(kills):
        started = _status_mtime(out)
        proc = start(args, env, tmp_path)
        if k % 4 == 3:
            time.sleep(rng.uniform(0.1, 4.0))
        else:
            deadline = time.monotonic() + 300
            while _status_mtime(out) <= started and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, max_delay))
        if proc.poll() is None:
            phase = _phase(out, started)
            proc.send_signal(signal.SIGKILL)
            phases[phase] = phases.get(phase, 0) + 1
            landed += 1
        proc.communicate()
        if (out / "config.json").exists():
            args = ["run", "--resume", str(out)]
        elif out.exists():  # killed before config.json was written: nothing to resume, start over
            for p in out.iterdir():
                p.unlink()
    final = run(args, env, tmp_path, timeout=900)
    assert final.returncode == 0, final.stderr
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    assert (out / "report.md").exists()
    return out, landed


def test_kill9_at_random_moments_resumes_identically(tmp_path, config_file, monkeypatch):
    """kill -9 during start-up, computation, snapshot writes or the report, then --resume: the
    numbers equal an uninterrupted run's."""
    reference = _reference(tmp_path, config_file, monkeypatch)
    kernel = negd_kernels.available()
    out, landed = _kill_and_resume(tmp_path, config_file, 3, kernel, random.Random(11), "killed", 3.0)
    assert landed >= 1
    assert_same_numbers(out, reference)


@pytest.mark.skipif(os.environ.get("NEGD_SOAK") != "1", reason="soak: set NEGD_SOAK=1 (several minutes)")
@pytest.mark.parametrize("kernels", [True, False], ids=["kernel", "torch"])
def test_soak_50_kills(tmp_path, config_file, monkeypatch, kernels):
    if not kernels:
        config_file = tmp_path / "torch.yaml"
        config_file.write_text(fault_yaml(False))
    reference = _reference(tmp_path, config_file, monkeypatch, kernels=kernels)
    rng = random.Random(2026 + kernels)
    total, runs, phases = 0, 0, {}
    while total < SOAK_KILLS:
        out, landed = _kill_and_resume(tmp_path, config_file, 5, kernels, rng, f"soak{runs}",
                                       4.0 if kernels else 15.0, phases)
        assert_same_numbers(out, reference)
        total += landed
        runs += 1
    print(f"soak ({'kernel' if kernels else 'torch'}): {total} kill -9 over {runs} runs (landed in: "
          f"{phases}), all resumed identical to the uninterrupted run")


def test_sigterm_during_report_leaves_status_not_complete(tmp_path, config_file, monkeypatch, capsys):
    """Defect 8: SIGTERM while the report is written left status "complete" without report.md.
    Here the signal is real (sent to this process while `negd run` builds the report)."""
    import negd.analysis

    real_report = negd.analysis.build_report

    def terminated(run_dir, **kw):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        raise AssertionError("SIGTERM was swallowed")

    monkeypatch.setattr(negd.analysis, "build_report", terminated)
    out = tmp_path / "D"
    assert main(["run", str(config_file), "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted while writing the report (every arm is complete)" in err
    assert f"resume with: negd run --resume {out}" in err
    state = json.loads((out / "status.json").read_text())
    assert state["state"] != "complete" and state["report"] == "interrupted"
    assert not (out / "report.md").exists()
    # --resume finishes it: every arm is complete, only the report is built.
    monkeypatch.setattr(negd.analysis, "build_report",
                        lambda run_dir, **kw: real_report(run_dir, figures=False))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "status.json").read_text())["state"] == "complete"
    assert (out / "report.md").exists()
