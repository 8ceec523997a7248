"""Commands that write into an existing directory recognise what wrote it (issue 19, class 1), refuse
flags they do not use (class 5), and a report of degenerate data is written or honestly failed (class 4).

Every test is from a user's view: the CLI on run directories, and what is on disk afterwards.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from negd.cli import main
from negd.runfiles import run_kind
from tests.runtools import TINY_YAML

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"


def _files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("negd: error: ") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def written(tmp_path):
    """Copies of run directories that negd reproduce digits, negd reproduce variants and negd sweep wrote."""
    for name in ("digits", "variants-reproduce", "sweep-shallow"):
        shutil.copytree(RESULTS / name, tmp_path / name)
    return tmp_path


@pytest.fixture
def tiny_run(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "tiny.yaml"), "--out", str(out), "--no-progress"]) == 0
    return out


def test_kinds_of_written_directories(written, tiny_run):
    assert run_kind(written / "digits") == "classification"
    assert run_kind(written / "variants-reproduce") == "variants"
    assert run_kind(written / "sweep-shallow") == "sweep"
    assert run_kind(tiny_run) == "experiment"
    assert json.loads((tiny_run / "config.json").read_text())["run_kind"] == "experiment"
    assert run_kind(written) is None


@pytest.mark.parametrize("name", ["digits", "variants-reproduce"])
def test_report_rebuilds_the_report_of_its_kind(written, capsys, name):
    before = _files(written / name)
    assert main(["report", str(written / name)]) == 0
    assert "correspondence" in capsys.readouterr().out
    after = _files(written / name)
    for key in ("report.md", "summary.json", "snapshots.json", "config.json"):
        assert after[key] == before[key], key  # the same report again, nothing replaced by less
    assert set(after) == set(before)


def test_report_of_a_sweep_or_a_foreign_directory_is_refused(written, capsys):
    before = _files(written / "sweep-shallow")
    assert main(["report", str(written / "sweep-shallow")]) == 2
    _one_line_error(capsys, "is a sweep directory")
    assert _files(written / "sweep-shallow") == before
    foreign = written / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text('{"model": "resnet"}')
    (foreign / "report.md").write_text("my notes")
    assert main(["report", str(foreign)]) == 2
    _one_line_error(capsys, "is not a run directory of negd")
    assert (foreign / "report.md").read_text() == "my notes"


@pytest.mark.parametrize("name", ["digits", "variants-reproduce", "sweep-shallow"])
def test_resume_and_out_into_another_kind_are_refused(written, tiny_run, capsys, name):
    target = written / name
    before = _files(target)
    config = str(tiny_run.parent / "tiny.yaml")
    for args, needle in ((["run", "--resume", str(target)], "--resume"),
                         (["reproduce", "shallow", "--resume", str(target)], "--resume"),
                         (["run", config, "--out", str(target)], "--out"),
                         (["reproduce", "digits", "--out", str(target)], "--out"),
                         (["reproduce", "variants", "--out", str(target)], "--out"),
                         (["sweep", config, "--grid", "alpha=1e-3", "--out", str(target)], "--out")):
        assert main([*args, "--no-progress"]) == 2, args
        _one_line_error(capsys, needle)
    assert _files(target) == before


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_report_never_replaces_a_report_with_less(tiny_run, capsys, damage):
    before = _files(tiny_run)
    path = tiny_run / "arms" / "0" / "snapshots.npz"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.unlink()
    assert main(["report", str(tiny_run)]) == 2
    _one_line_error(capsys, "arm 0", "the existing report.md and summary.json are kept")
    after = _files(tiny_run)
    for key in ("report.md", "summary.json", "status.json"):
        assert after[key] == before[key]


@pytest.mark.parametrize("experiment", ["digits", "mnist1d", "variants"])
@pytest.mark.parametrize("flag", [["--shards", "2"], ["--ray", "127.0.0.1:1"], ["--shard-checkpoint", "5"],
                                  ["--no-scan"]])
def test_flags_a_command_does_not_use_are_refused(tmp_path, capsys, experiment, flag):
    out = tmp_path / "out"
    assert main(["reproduce", experiment, *flag, "--out", str(out), "--no-progress"]) == 2
    _one_line_error(capsys, f"{flag[0]}: not available for {experiment!r}")
    assert not out.exists()


def test_refused_start_leaves_no_directory(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    for args in (["--shards", "9"], ["--shard-checkpoint", "0"]):
        out = tmp_path / "out"
        assert main(["run", str(tmp_path / "tiny.yaml"), "--out", str(out), *args, "--no-progress"]) == 2
        capsys.readouterr()
        assert not out.exists()


# ----------------------------------------------------------------- degenerate data (issue 19, class 4)
@pytest.mark.parametrize("extra", ["realizations: 1\ntrajectories: 1\n", "realizations: 2\ntrajectories: 2\n",
                                   "realizations: 1\ntrajectories: 1\nn_snapshots: 2\n"])
def test_degenerate_runs_get_their_report(tmp_path, capsys, extra):
    (tmp_path / "cfg.yaml").write_text(TINY_YAML.replace("realizations: 4\n", "").replace(
        "trajectories: 2\n", "").replace("n_snapshots: 3\n", "n_snapshots: 3\n" if "n_snapshots" not in extra
                                         else "") + extra)
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "cfg.yaml"), "--out", str(out), "--no-progress"]) == 0, \
        capsys.readouterr().err
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "complete" and status["report"] == "written"
    assert {p.name for p in (out / "figures").iterdir()} >= {"loss.png", "delta.png", "regime.png"}


@pytest.mark.parametrize("series", ["zero", "nan", "negative"])
def test_report_of_all_zero_or_nan_series(tiny_run, capsys, series):
    from negd.experiments.run.store import load_snapshots, save_snapshots

    for arm in (0,):
        path = tiny_run / "arms" / str(arm) / "snapshots.npz"
        arrays = load_snapshots(path)
        fill = {"zero": 0.0, "nan": np.nan, "negative": -1.0}[series]
        # A loss may be negative (minus a return); a standard error or a variance may not, and the
        # summary's schema refuses one (tests/test_verdict.py), so only the losses go negative here.
        keys = ("ne_loss_mean", "loss_of_mean", "gd_loss") + (() if series == "negative" else
                                                                ("ne_loss_se", "param_var"))
        for key in keys:
            arrays[key] = np.full_like(arrays[key], fill)
        save_snapshots(path, arrays)
    (tiny_run / "report.md").unlink()
    (tiny_run / "summary.json").unlink()
    assert main(["report", str(tiny_run)]) == 0, capsys.readouterr().err
    assert (tiny_run / "figures" / "loss.png").stat().st_size > 0


def test_a_failing_report_leaves_an_honest_status(tmp_path, capsys, monkeypatch):
    import negd.analysis

    def broken(run_dir, **kw):
        raise ValueError("Data cannot be log-scaled because all values are <= 0.")

    monkeypatch.setattr(negd.analysis, "build_report", broken)
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    out = tmp_path / "run"
    assert main(["run", str(tmp_path / "tiny.yaml"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "report failed (ValueError: Data cannot be log-scaled" in err
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "complete" and status["report"] == "failed"


@pytest.mark.parametrize("name", ["shallow", "finite-beta", "paper-deep"])
def test_report_of_a_copy_without_arms_keeps_its_report(tmp_path, capsys, name):
    """docs/results keeps reports without arms/: rebuilding them would give an empty partial report."""
    shutil.copytree(RESULTS / name, tmp_path / name)
    before = _files(tmp_path / name)
    assert main(["report", str(tmp_path / name)]) == 2
    _one_line_error(capsys, "the existing report holds", "are kept")
    assert _files(tmp_path / name) == before
