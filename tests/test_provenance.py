"""Resume guards (issue 11, defect 3): the compute path and every setting that affects the numbers
are recorded; `--resume` refuses another path, conflicting flags and an edited config.json."""

from __future__ import annotations

import json

import pytest

from negd import kernels
from negd.cli import main
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.provenance import differences, settings_hash, settings_of
from negd.experiments.run.runner import load_run_config, resume_experiment, run_experiment
from negd.validation import NegdError
from tests.test_store import TINY


class _Stop(KeyboardInterrupt):
    pass


def _interrupted(tmp_path, **names):
    def hook(arm, row):
        if (arm, row) == (0, 2):
            raise _Stop

    out = tmp_path / "run"
    config = config_from_dict(TINY, **names)
    assert run_experiment(config, out, progress=False, report=False, on_snapshot=hook).state == "interrupted"
    return out


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("negd: error: "), err
    return err[0]


def test_records_compute_path_and_settings(tmp_path):
    out = _interrupted(tmp_path)
    stored = json.loads((out / "config.json").read_text())
    path = stored["compute_path"]
    assert set(path) >= {"kernel", "param_dtype", "loss_dtype", "device", "torch", "negd"}
    assert path["kernel"] == stored["kernel"] and path["device"] == "cpu"
    config, arms = load_run_config(out)
    # The hash covers every field of the configuration: it round-trips through config.json.
    assert stored["settings_hash"] == settings_hash(settings_of(config, arms))


@pytest.mark.skipif(not kernels.available(), reason="needs the C kernel")
def test_resume_on_other_compute_path_refused_then_allowed_and_recorded(tmp_path, monkeypatch, capsys):
    """Defect 3: a kernel run resumed with NEGD_DISABLE_KERNELS=1 changed the numbers silently."""
    out = _interrupted(tmp_path)
    monkeypatch.setenv("NEGD_DISABLE_KERNELS", "1")
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    line = _one_line(capsys)
    assert "kernel: True -> False" in line and "--allow-path-change" in line
    assert resume_experiment(out, progress=False, report=False, allow_path_change=True).state == "complete"
    stored = json.loads((out / "config.json").read_text())
    assert stored["kernel"] is False and stored["compute_path"]["kernel"] is False
    assert stored["path_changes"][0]["from"]["kernel"] is True


def test_edited_seed_in_config_json_refused(tmp_path, capsys):
    """Defect 3: a config.json whose seed was edited resumed into mixed data."""
    out = _interrupted(tmp_path)
    stored = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps(stored | {"seed": 6}))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    assert "was edited after the run started" in _one_line(capsys)
    # Hash removed as well: the checkpoints still know their settings, and name the field.
    del stored["settings_hash"]
    (out / "config.json").write_text(json.dumps(stored | {"seed": 6}))
    with pytest.raises(NegdError, match=r"seed: 5 -> 6"):
        resume_experiment(out, progress=False, report=False)


def test_reproduce_resume_refuses_conflicting_flags(tmp_path, capsys, monkeypatch):
    """Defect 3: `negd reproduce --resume D --seed 99 --realizations 7 --scale paper --device cuda`
    ignored every flag."""
    out = _interrupted(tmp_path, experiment="shallow", scale="quick")
    argv = ["reproduce", "shallow", "--resume", str(out), "--no-progress"]
    assert main(argv + ["--seed", "99", "--realizations", "7", "--scale", "paper", "--device", "cuda"]) == 2
    line = _one_line(capsys)
    for part in ("--seed 99 (the run has 5)", "--realizations 7 (the run has 6)",
                 "--scale 'paper' (the run has 'quick')", "--device 'cuda' (the run has 'cpu')"):
        assert part in line
    # Flags equal to the run's settings are fine (report without figures: seconds of matplotlib).
    import negd.analysis

    real_report = negd.analysis.build_report
    monkeypatch.setattr(negd.analysis, "build_report", lambda d, **kw: real_report(d, figures=False))
    assert main(argv + ["--seed", "5", "--realizations", "6", "--scale", "quick"]) == 0
    assert json.loads((out / "status.json").read_text())["arms_complete"] == [0, 1]


def test_differences_names_changed_keys():
    assert differences({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3], "c": 0}) == ["b: [1, 2] -> [1, 3]",
                                                                               "c: None -> 0"]
    assert differences({"kernel": True}, {"kernel": True, "torch": "2"}, common_only=True) == []


def test_field_added_to_negd_later_does_not_invalidate_older_runs(tmp_path, monkeypatch):
    """The settings are derived from the configuration: a field that a later negd adds (say
    ``dtype``) is recorded for new runs and ignored for runs that started without it."""
    from negd.experiments.config.schema import ExperimentConfig

    out = _interrupted(tmp_path)
    original = ExperimentConfig.to_user_dict
    monkeypatch.setattr(ExperimentConfig, "to_user_dict", lambda self: original(self) | {"dtype": "float32"})
    assert "dtype" in settings_of(*load_run_config(out))
    assert resume_experiment(out, progress=False, report=False).state == "complete"
