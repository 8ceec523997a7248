"""Run-directory files read through one validating loader (issue 11, defect 6): a corrupt, truncated
or foreign file gives one line naming it; `--resume` recomputes a corrupt arm from the start and
ends with the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import shutil

import pytest

from negd.cli import main
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.experiments.run.store import load_checkpoint, load_snapshots
from negd.runfiles import read_json_object
from negd.validation import NegdError
from tests.runtools import assert_same_numbers

TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "init": {"kind": "paper", "sigma0": 0.1},
        "beta": "inf", "alpha": 1e-3, "lambda": 1, "realizations": 6, "t_final": 0.03, "n_snapshots": 4,
        "trajectories": 2, "seed": 5, "scan": {"factors": [2], "realizations": 3}}


class _Stop(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    run_experiment(config_from_dict(TINY), out, progress=False, report=False)
    return out


def _interrupted(tmp_path, keep=None):
    """A run stopped after arm 1's row 1; ``keep`` = (arm, row): copy of that arm's snapshots then."""
    out = tmp_path / "run"
    saved = tmp_path / "early-snapshots.npz"

    def hook(arm, row):
        if keep == (arm, row):
            shutil.copy(out / "arms" / str(arm) / "snapshots.npz", saved)
        if (arm, row) == (1, 1):
            raise _Stop

    result = run_experiment(config_from_dict(TINY), out, progress=False, report=False, on_snapshot=hook)
    assert result.state == "interrupted"
    return out, saved


def _resume_reports_recompute(out, capsys, arm, needle):
    assert resume_experiment(out, progress=False, report=False).state == "complete"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and f"recomputing arm {arm} from the start" in err[0], err
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("name", ["checkpoint.pt", "snapshots.npz"])
def test_truncated_file_is_recomputed_on_resume(tmp_path, reference, capsys, name):
    """Defect 6: a truncated checkpoint.pt / snapshots.npz gave PytorchStreamReader / BadZipFile
    tracebacks on --resume."""
    out, _ = _interrupted(tmp_path)
    path = out / "arms" / "0" / name
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(NegdError, match=rf"{name}: is unreadable"):
        (load_checkpoint if name == "checkpoint.pt" else load_snapshots)(path)
    _resume_reports_recompute(out, capsys, 0, f"arms/0/{name}")
    assert (out / "arms" / "0" / f"{name}.corrupt").exists()  # set aside, not deleted
    assert_same_numbers(out, reference)


def test_other_arms_checkpoint_copied_in_is_refused(tmp_path, reference, capsys):
    """Defect 6: another arm's checkpoint copied in was accepted."""
    out, _ = _interrupted(tmp_path)
    shutil.copy(out / "arms" / "1" / "checkpoint.pt", out / "arms" / "0" / "checkpoint.pt")
    _resume_reports_recompute(out, capsys, 0, "is the checkpoint of arm 1, not of arm 0")
    assert_same_numbers(out, reference)


def test_checkpoint_with_more_rows_than_snapshots(tmp_path, reference, capsys):
    """Defect 6: a checkpoint with more rows than the snapshots gave an IndexError."""
    out, early = _interrupted(tmp_path, keep=(0, 1))
    shutil.copy(early, out / "arms" / "0" / "snapshots.npz")
    _resume_reports_recompute(out, capsys, 0, "does not cover the checkpoint's 4 rows")
    assert_same_numbers(out, reference)


@pytest.mark.parametrize("content,needle", [
    (b"\x89PNG\x00\xff\xfe binary", "is not text"),
    (b"[1, 2, 3]", "must hold a JSON object, got a list"),
    (b'{"beta": "hot", "alpha": 0.001, "arms": []}', "beta = 'hot' is not a valid value"),
    (b'{"arms": [{"sigma": "x"}]}', "arms[0].sigma = 'x' is not a valid value"),
    (b'{"arms": [{"sigma": 0.1, "realizations": "many"}]}', "arms[0].realizations = 'many'"),
    (b'{"arms": "all"}', "arms must be a list"),
    (b'{"beta": "inf", "alpha"', "is not valid JSON"),
])
def test_bad_config_json_one_line_for_report_and_resume(tmp_path, capsys, content, needle):
    """Defect 6: `negd report` on a binary config.json, a list, strings where numbers belong."""
    out, _ = _interrupted(tmp_path)
    (out / "config.json").write_bytes(content)
    for argv in (["report", str(out)], ["run", "--resume", str(out), "--no-progress"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("negd: error: ") and "config.json" in err[0], err
        if argv[0] == "report":
            assert needle in err[0], err


def test_readers_name_the_file(tmp_path):
    (tmp_path / "status.json").write_text('"running"')
    with pytest.raises(NegdError, match=r"status.json: must hold a JSON object, got a str"):
        read_json_object(tmp_path / "status.json")
    (tmp_path / "checkpoint.pt").write_bytes(json.dumps({"rows": 1}).encode())
    with pytest.raises(NegdError, match=r"checkpoint.pt: is unreadable .*; resume the run"):
        load_checkpoint(tmp_path / "checkpoint.pt")
