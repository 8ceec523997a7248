"""negd reproduce control keeps what it computed and resumes (negd.experiments.control_store), tiny size."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import negd.experiments.control as control
from negd.cli import main
from negd.experiments.control import EnvSettings, control_preset, run_control
from negd.runfiles import CorruptFile, read_json_object
from negd.validation import NegdError

TIMING = {"cpu_seconds", "wall_seconds", "total_wall_seconds"}


def _exp(seed: int = 3):
    exp = control_preset("quick", seed=seed)
    return replace(exp, envs=(EnvSettings("CartPole-v1", 3, 0.3, 2, 4, 3, twin_proposals=4),
                              EnvSettings("Pendulum-v1", 3, 0.3, 2, 4, 3, twin_proposals=4, init=0.5)),
                   n_snapshots=3, eval_episodes=3, heldout_episodes=4)


def _without_timing(obj):
    if isinstance(obj, dict):
        return {k: _without_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [_without_timing(v) for v in obj]
    return obj


def _interrupt_at(monkeypatch, call: int) -> list[int]:
    """Make the ``call``-th advance of any arm raise KeyboardInterrupt (Ctrl-C); returns the call count."""
    calls = [0]
    real = control.advance_tallied

    def advance(*args, **kwargs):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(control, "advance_tallied", advance)
    return calls


def test_an_interrupted_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path, monkeypatch):
    whole = run_control(_exp(), tmp_path / "whole", progress=False)
    expected = read_json_object(whole / "summary.json", sealed=True)
    starts = read_json_object(whole / "config.json")["starts"]
    assert starts == {"CartPole-v1": "zeros", "Pendulum-v1": "shared N(0, 0.5^2), paper_init(seed)"}
    calls = _interrupt_at(monkeypatch, 3 * 4 + 3 * 1 + 3)  # Pendulum's population arm, after its 2nd snapshot
    run_dir = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_control(_exp(), run_dir, progress=False)
    total = 3 * 4 * 2  # 3 snapshots x 4 arms x 2 environments
    kept = sorted(p.name for p in (run_dir / "arms" / "Pendulum-v1").iterdir())
    assert kept == ["neuroevolution.json", "population.checkpoint.pt"]
    assert len(list((run_dir / "arms" / "CartPole-v1").glob("*.json"))) == 4
    partial = read_json_object(run_dir / "summary.json", sealed=True)
    assert not partial["complete"] and list(partial["envs"]) == ["CartPole-v1"]

    before = calls[0]
    run_control(_exp(), run_dir, progress=False, resume=True)
    resumed_calls = calls[0] - before
    assert resumed_calls == total - 17  # the 17 advances done before the cut are not redone
    got = read_json_object(run_dir / "summary.json", sealed=True)
    assert got["complete"]
    assert _without_timing(got) == _without_timing(expected)
    assert not list(run_dir.glob("arms/*/*.checkpoint.pt"))  # finished arms keep only their results
    assert (run_dir / "report.md").read_text().startswith("# Control without a gradient")


def test_a_resumed_run_never_recomputes_or_replaces_a_finished_arm(tmp_path, monkeypatch):
    run_dir = run_control(_exp(), tmp_path / "run", progress=False)
    files = sorted(run_dir.glob("arms/*/*.json"))
    before = {p: p.read_bytes() for p in files}
    calls = _interrupt_at(monkeypatch, 10**9)
    run_control(_exp(), run_dir, progress=False, resume=True)
    assert calls[0] == 0  # nothing recomputed
    assert {p: p.read_bytes() for p in sorted(run_dir.glob("arms/*/*.json"))} == before
    assert read_json_object(run_dir / "summary.json", sealed=True)["complete"]


def test_a_damaged_arm_file_is_named_and_left_as_it_is(tmp_path):
    run_dir = run_control(_exp(), tmp_path / "run", progress=False)
    path = run_dir / "arms" / "Pendulum-v1" / "adaptive-mc.json"
    data = json.loads(path.read_text())
    data["summary"]["heldout"]["return_mean"] += 1.0  # still valid JSON: only the checksum can tell
    path.write_text(json.dumps(data))
    damaged = path.read_bytes()
    with pytest.raises(CorruptFile, match="adaptive-mc.json.*checksum"):
        run_control(_exp(), run_dir, progress=False, resume=True)
    assert path.read_bytes() == damaged


def test_a_damaged_checkpoint_is_named(tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 3)  # CartPole's neuroevolution arm, after its 2nd snapshot
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_control(_exp(), run_dir, progress=False)
    path = run_dir / "arms" / "CartPole-v1" / "neuroevolution.checkpoint.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFile, match="neuroevolution.checkpoint.pt"):
        run_control(_exp(), run_dir, progress=False, resume=True)


def test_resume_refuses_other_settings_and_other_kinds_in_one_line(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 3)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_control(_exp(), run_dir, progress=False)
    with pytest.raises(NegdError, match=r"^--resume: .* other settings \(seed 3, not 4\)"):
        run_control(_exp(seed=4), run_dir, progress=False, resume=True)
    cartpole, pendulum = _exp().envs
    other_sigma = replace(_exp(), envs=(cartpole, replace(pendulum, sigma=0.5)))
    with pytest.raises(NegdError, match=r"other settings \(Pendulum-v1 sigma 0.3, not 0.5\)"):
        run_control(other_sigma, run_dir, progress=False, resume=True)
    with pytest.raises(NegdError, match="^--out: .*--resume"):
        run_control(_exp(), run_dir, progress=False)  # a new run never writes over it
    other = tmp_path / "variants"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"run_kind": "variants"}))
    for argv, field in ((["reproduce", "control", "--resume", str(other)], "negd reproduce variants"),
                        (["reproduce", "control", "--resume", str(tmp_path / "none")], "not a directory"),
                        (["reproduce", "control", "--resume", str(run_dir), "--seed", "4"], "--seed 4"),
                        (["reproduce", "control", "--resume", str(run_dir), "--out", str(other)], "--out"),
                        (["reproduce", "control", "--resume", str(run_dir), "--twin", "matched"], "--twin")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and field in err[0], err


def test_the_command_line_says_how_to_resume_and_resume_finishes(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(control, "control_preset", lambda *a, **k: _exp())
    _interrupt_at(monkeypatch, 5)
    run_dir = tmp_path / "run"
    assert main(["reproduce", "control", "--out", str(run_dir), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert f"negd reproduce control --resume {run_dir}" in err
    assert main(["reproduce", "control", "--resume", str(run_dir), "--no-progress"]) == 0
    assert "report:" in capsys.readouterr().out
    assert read_json_object(run_dir / "summary.json", sealed=True)["complete"]
    assert main(["report", str(run_dir)]) == 0


def test_the_start_is_recorded_and_a_negative_init_is_refused(tmp_path):
    import torch

    from negd.experiments.control import _x0
    from negd.losses.models import paper_init

    s = _exp().envs[1]
    assert torch.equal(_x0(s, 3), paper_init(s.spec.n_params, 0.5, seed=3, dtype=torch.float64))
    assert not _x0(replace(s, init=0.0), 3).any()
    bad = replace(_exp(), envs=(replace(s, init=-1.0),))
    with pytest.raises(NegdError, match="^init:"):
        run_control(bad, tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()
