"""negd reproduce control (negd.experiments.control) at a tiny size, and its command-line errors."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from negd.cli import main
from negd.experiments.control import EnvSettings, control_preset, run_control
from negd.validation import NegdError


def _tiny(tmp_path):
    exp = control_preset("quick", seed=3)
    exp = replace(exp, envs=(EnvSettings("CartPole-v1", 3, 0.3, 2, 4, 3, twin_proposals=4),
                             EnvSettings("Pendulum-v1", 3, 0.3, 2, 4, 3, twin_proposals=4)),
                  n_snapshots=3, eval_episodes=3, heldout_episodes=4)
    return run_control(exp, tmp_path / "run", progress=False)


def test_a_tiny_control_run_writes_report_curves_and_summary(tmp_path):
    run_dir = _tiny(tmp_path)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] and set(summary["envs"]) == {"CartPole-v1", "Pendulum-v1"}
    for env in summary["envs"].values():
        assert set(env["arms"]) == {"neuroevolution", "population", "adaptive-mc", "mean-field twin"}
        for arm in env["arms"].values():
            rows = arm["snapshots"]
            assert [r["step"] for r in rows] == [0, 2, 4]
            assert rows[-1]["env_steps"] >= rows[0]["env_steps"] > 0 and rows[-1]["cpu_seconds"] >= 0
            assert len(arm["summary"]["heldout"]["per_realization"]) == arm["summary"]["realizations"]
        assert "combined SE" in env["correspondence"]["sentence"]
    assert "tie_scan" in summary["envs"]["CartPole-v1"]["arms"]["neuroevolution"]["summary"]
    report = (run_dir / "report.md").read_text()
    assert "## Verdict" in report and "ties: at sigma" in report
    assert (run_dir / "figures" / "returns.png").stat().st_size > 1000
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 3 and "torch" in config["versions"]


def test_same_seed_same_numbers(tmp_path):
    a = json.loads((_tiny(tmp_path / "a") / "summary.json").read_text())
    b = json.loads((_tiny(tmp_path / "b") / "summary.json").read_text())
    for env in a["envs"]:
        for arm in a["envs"][env]["arms"]:
            assert (a["envs"][env]["arms"][arm]["summary"]["heldout"]
                    == b["envs"][env]["arms"][arm]["summary"]["heldout"])


def test_a_non_empty_out_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("keep")
    with pytest.raises(NegdError, match="^--out:"):
        _tiny(tmp_path)
    assert (tmp_path / "run" / "x").read_text() == "keep"


@pytest.mark.parametrize("argv, field", [
    (["reproduce", "control", "--scale", "paper"], "--scale"),
    (["reproduce", "control", "--twin", "matched"], "--twin"),
    (["reproduce", "control", "--realizations", "1"], "--realizations"),
    (["reproduce", "shallow", "--scale", "full"], "--scale"),
])
def test_command_line_errors_are_one_line(argv, field, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0], err


def test_the_correspondence_verdict_claims_only_what_the_error_bars_resolve():
    from negd.experiments.control import correspondence

    def ret(mean, se):
        return {"return_mean": mean, "return_se": se}

    assert correspondence(ret(480, 5), ret(100, 1), 10)["label"] == "departs"
    assert correspondence(ret(480, 2), ret(482, 2), 10)["label"] == "agrees"  # 4 SE = 11 < 47
    unresolved = correspondence(ret(-700, 57), ret(-850, 12), -1240)
    assert unresolved["label"] == "unresolved" and not unresolved["agrees"]
    assert "-2.6 combined SE" in unresolved["sentence"]  # -150 / hypot(57, 12)
