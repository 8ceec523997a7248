"""negd.experiments.variants (``negd reproduce variants``): a tiny run's files, determinism, bad input."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from negd.cli import main
from negd.experiments.variants import run_variants, variants_preset
from negd.validation import NegdError
from tests.verdict_oracle import expected_verdict

RULES = ["neuroevolution", "population-comma", "population-elitist", "adaptive-mc", "minibatch-paired"]
TINY = replace(variants_preset(realizations=4), t_final=0.01, n_snapshots=3)  # 200 steps per rule


def _numbers(summary: dict) -> dict:
    """The per-rule numbers of summary.json, without wall times."""
    return {name: {k: v for k, v in s.items() if k != "wall_seconds"} for name, s in summary["rules"].items()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return run_variants(TINY, tmp_path_factory.mktemp("variants") / "run", progress=False)


def test_tiny_run_writes_files_with_finite_numbers(tiny_run):
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert list(summary["rules"]) == RULES and summary["seed"] == 0
    assert {"negd", "torch", "numpy"} <= set(summary["config"]["versions"])
    snapshots = json.loads((tiny_run / "snapshots.json").read_text())
    for name, s in summary["rules"].items():
        # the one verdict the rule gives for the stored numbers (tests/verdict_oracle.py)
        assert s["verdict_label"] == expected_verdict(snapshots[name], "loss_gap", "loss_gap_se", "twin_loss")
        for key in ("delta_ratio", "delta_ratio_se", "loss_gap_relative"):
            assert math.isfinite(s["final"][key]), (name, key)
        for key in ("loss_mean", "loss_se", "twin_loss", "drift_per_evaluation_run",
                    "drift_per_evaluation_twin", "evaluations_to_target", "measured_ratio_to_neuroevolution"):
            assert math.isfinite(s[key]), (name, key)
        assert s["drift_per_evaluation_run"] > 0  # beta = inf (and comma, at K = 4): the loss went down
    rules = summary["rules"]
    # 4 realizations over 200 steps: Delta_c/param_change's 2-SE band is wider than 0.05 (seed 0)
    for name in ("neuroevolution", "adaptive-mc", "minibatch-paired"):
        assert rules[name]["verdict_label"] == "unresolved"
        assert 4 * rules[name]["final"]["delta_ratio_se"] > 0.1
    assert rules["neuroevolution"]["measured_ratio_to_neuroevolution"] == 1.0
    assert rules["population-comma"]["evaluations_to_target"] <= 4 * TINY.steps  # reached within the run
    assert rules["population-comma"]["evaluations_per_step"] == 4
    assert rules["minibatch-paired"]["theory_ratio_to_neuroevolution"] == 0.5
    assert rules["adaptive-mc"]["theory_ratio_to_neuroevolution"] is None
    for rows in snapshots.values():
        assert [r["step"] for r in rows] == [0, 100, 200]
        assert rows[0]["loss_mean"] == pytest.approx(rows[0]["twin_loss"], rel=1e-12)  # same x(0)
    report = (tiny_run / "report.md").read_text()
    assert "## Verdict" in report and all(name in report for name in RULES)
    for name in ("loss", "delta"):
        assert (tiny_run / "figures" / f"{name}.png").stat().st_size > 1000
    with pytest.raises(NegdError, match="--out"):
        run_variants(TINY, tiny_run, progress=False)


def test_same_seed_same_numbers(tiny_run, tmp_path):
    again = run_variants(TINY, tmp_path / "again", progress=False)
    first = json.loads((tiny_run / "summary.json").read_text())
    second = json.loads((again / "summary.json").read_text())
    assert _numbers(first) == _numbers(second)


@pytest.mark.parametrize("argv, field", [
    (["--realizations", "0"], "--realizations"),
    (["--realizations", "2"], "--realizations"),
    (["--seed", "-1"], "--seed"),
    (["--scale", "paper"], "--scale"),
    (["--resume", "somewhere"], "--resume"),
])
def test_bad_input_is_one_line(capsys, argv, field):
    assert main(["reproduce", "variants", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert field in err and len(err.splitlines()) == 1
