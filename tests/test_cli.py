"""Command line: a miniature end-to-end `negd run`, resume, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from negd.cli import main

MINI_YAML = """
network: {depth: 1, width: 4, output_bias: false}
task: sin2pi
init: {kind: paper, sigma0: 0.1}
beta: inf
alpha: 1e-3
lambda: 1
realizations: 6
t_final: 0.03
n_snapshots: 4
trajectories: 2
seed: 1
scan: {factors: [2], realizations: 3}
"""


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("negd: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_miniature_end_to_end_run(tmp_path, capsys):
    (tmp_path / "mini.yaml").write_text(MINI_YAML)
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "mini.yaml"), "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert f"run: {out}" in stdout
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "complete" and status["arms_complete"] == [0, 1]
    with np.load(out / "arms" / "0" / "snapshots.npz") as z:
        assert z["t"].shape == (4,) and z["param_mean"].shape == (4, 12)
    # The report is built when negd.analysis provides it (another module); the run stands alone.
    try:
        from negd.analysis import build_report  # noqa: F401
    except ImportError:
        return
    assert (out / "report.md").exists() and (out / "summary.json").exists()
    # Re-running into the same directory is refused and leaves it untouched.
    before = (out / "arms" / "0" / "snapshots.npz").read_bytes()
    assert main(["run", str(tmp_path / "mini.yaml"), "--out", str(out), "--no-progress"]) == 2
    assert "not empty" in _one_error_line(capsys)
    assert (out / "arms" / "0" / "snapshots.npz").read_bytes() == before


def test_resume_via_cli_after_interrupt(tmp_path, capsys, monkeypatch):
    from negd.experiments.run import runner

    (tmp_path / "mini.yaml").write_text(MINI_YAML)
    out = tmp_path / "out"
    real = runner.snapshot_row
    calls = {"n": 0}

    def interrupt_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as Ctrl-C in the middle of a snapshot interval
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "snapshot_row", interrupt_on_third)
    assert main(["run", str(tmp_path / "mini.yaml"), "--out", str(out), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert f"negd run --resume {out}" in err
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"
    monkeypatch.setattr(runner, "snapshot_row", real)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert json.loads((out / "status.json").read_text())["state"] == "complete"


@pytest.mark.parametrize("argv,needle", [
    ([], "command"),
    (["frobnicate"], "invalid choice"),
    (["reproduce"], "experiment"),
    (["reproduce", "medium"], "invalid choice"),
    (["reproduce", "shallow", "--scale", "huge"], "--scale"),
    (["reproduce", "shallow", "--realizations", "many"], "--realizations"),
    (["reproduce", "shallow", "--realizations", "0"], "realizations: must be an integer >= 1"),
    (["reproduce", "shallow", "--seed", "-3"], "seed: "),
    (["reproduce", "shallow", "--bogus"], "unrecognized arguments"),
    (["reproduce", "finite-beta", "--twin-realizations", "1"],
     "argument --twin-realizations: must be an integer >= 2, got '1'"),
    (["reproduce", "finite-beta", "--twin-realizations", "2.5"], "--twin-realizations: must be an integer"),
    (["reproduce", "finite-beta", "--twin-realizations", "-4"], "--twin-realizations: must be an integer"),
    (["reproduce", "shallow", "--twin-realizations", "8"], "--twin-realizations: only for an ensemble twin"),
    (["reproduce", "shallow", "--twin", "langevin"], "twin: langevin needs a finite beta"),
    (["reproduce", "shallow", "--twin", "exact"], "argument --twin: invalid choice"),
    (["reproduce", "finite-beta", "--twin-realizations", "8", "--resume", "/nonexistent/dir"],
     "is not a directory"),
    (["reproduce", "shallow", "--allow-path-change"], "only with --resume"),
    (["run"], "CONFIG"),
    (["run", "/nonexistent/config.yaml"], "no such file"),
    (["run", "--resume", "/nonexistent/dir"], "--resume: "),
    (["report", "/nonexistent/dir"], "not a directory"),
])
def test_bad_arguments_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in _one_error_line(capsys)


def test_bad_config_field_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(MINI_YAML.replace("lambda: 1", "sigma: -1"))
    assert main(["run", str(path)]) == 2
    expected = "negd: error: config error: sigma: must be a positive finite number, got -1"
    assert _one_error_line(capsys) == expected
    path.write_text(MINI_YAML + "realisations: 3\n")
    assert main(["run", str(path)]) == 2
    assert "did you mean 'realizations'" in _one_error_line(capsys)


def test_reproduce_refuses_non_empty_out(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["reproduce", "shallow", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--out" in _one_error_line(capsys)
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_console_script_entry_point(tmp_path):
    """`python -m negd.cli` (the `negd` console script's function) exits 2 with one stderr line."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "negd.cli", "reproduce", "nope"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("negd: error: ")


def test_reproduce_twin_realizations_reaches_the_config(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from negd.experiments.run import runner

    configs = []

    def fake_run(config, out, progress=True):  # records the config instead of running it
        configs.append(config)
        return SimpleNamespace(report_message=None, state="complete", run_dir=tmp_path, report=None)

    monkeypatch.setattr(runner, "run_experiment", fake_run)
    assert main(["reproduce", "finite-beta", "--twin-realizations", "7", "--no-progress"]) == 0
    assert main(["reproduce", "finite-beta", "--scale", "paper", "--twin-realizations", "2"]) == 0
    assert main(["reproduce", "finite-beta"]) == 0
    quick, paper, default = configs
    assert quick.twin == "langevin" and quick.twin_realizations == 7 and quick.scale == "quick"
    assert paper.twin_realizations == 2 and paper.scale == "paper"
    assert default.twin_realizations == 32  # the quick preset's, unchanged without the flag
    # nothing else of the preset changes
    assert quick.with_overrides(twin_realizations=32) == default
    capsys.readouterr()
    # --twin: switch the twin; an ensemble twin keeps or gets its realizations
    assert main(["reproduce", "finite-beta", "--twin", "matched"]) == 0
    assert main(["reproduce", "finite-beta", "--twin", "noiseless"]) == 0
    assert main(["reproduce", "shallow", "--twin", "matched", "--twin-realizations", "5"]) == 0
    matched, noiseless, shallow = configs[3:]
    assert matched.twin == "matched" and matched.twin_realizations == 32
    assert matched.with_overrides(twin="langevin") == default
    assert noiseless.twin == "noiseless" and noiseless.twin_realizations is None
    assert shallow.twin == "matched" and shallow.twin_realizations == 5
    # the mean-field twin gets its own default R_L (its runs cost M + 2 evaluations each), not 32
    assert main(["reproduce", "finite-beta", "--twin", "mean-field"]) == 0
    assert main(["reproduce", "shallow", "--twin", "mean-field", "--twin-realizations", "3"]) == 0
    finite_mf, shallow_mf = configs[6:]
    assert (finite_mf.twin, finite_mf.twin_realizations, finite_mf.twin_proposals) == ("mean-field", 8, 64)
    assert (shallow_mf.twin, shallow_mf.twin_realizations) == ("mean-field", 3)
    capsys.readouterr()


def test_report_failed_exits_non_zero(tmp_path, capsys, monkeypatch):
    """Issue 11, defect 8: "report failed" exited 0."""
    import negd.analysis
    from negd.validation import NegdError

    def broken(run_dir, **kw):
        raise NegdError("summary: cannot compute")

    monkeypatch.setattr(negd.analysis, "build_report", broken)
    (tmp_path / "mini.yaml").write_text(MINI_YAML)
    assert main(["run", str(tmp_path / "mini.yaml"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "negd: report failed: summary: cannot compute" in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "status.json").read_text())["report"] == "failed"
