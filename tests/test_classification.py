"""negd.experiments.classification: a tiny NE / twin / Adam run on two-moons, its files and verdicts."""

from __future__ import annotations

import json

import pytest

from negd.cli import main
from negd.experiments.classification import (
    ClassificationExperiment,
    classification_preset,
    run_classification,
)
from negd.validation import NegdError
from tests.verdict_oracle import expected_verdict

TINY = ClassificationExperiment("moons", "two-moons", width=8, sigma=0.05, ne_steps=60, check_steps=20,
                                realizations=4, n_snapshots=3, adam_steps=20, regime_probes=2)


def test_tiny_run_writes_report_summary_and_figures(tmp_path):
    run_dir = run_classification(TINY, tmp_path / "run", progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())
    snapshots = json.loads((run_dir / "snapshots.json").read_text())
    # 4 realizations cannot resolve Delta_c/param_change: its 2-SE band (0.45 and 1.5 wide with seed 0)
    # is far wider than the 0.05 of "holds", so both arms are unresolved, and state what would resolve it.
    for arm, key in ((summary, "ne_twin"), (summary["small_sigma_arm"], "ne_twin_small_sigma")):
        rows = [r | {"gap": r["ne_loss_mean"] - r["twin_loss"], "gap_se": r["ne_loss_se"]}
                for r in snapshots[key]]
        assert arm["verdict_label"] == expected_verdict(rows, "gap", "gap_se", "twin_loss") == "unresolved"
        assert 2 * arm["final"]["delta_ratio_se"] > 0.05 and arm["realizations_needed"] > 4
    rows = snapshots["ne_twin"]
    assert [r["ne_step"] for r in rows] == [0, 30, 60]
    assert rows[0]["delta"] == 0 and rows[0]["ne_loss_mean"] == pytest.approx(rows[0]["twin_loss"], rel=1e-6)
    assert rows[-1]["ne_loss_mean"] < rows[0]["ne_loss_mean"]  # beta = inf: the loss never goes up
    assert 0 <= rows[-1]["ne_test_accuracy"] <= 1 and snapshots["adam"][-1]["loss_evaluations"] == 20
    assert [r["ne_step"] for r in snapshots["ne_twin_small_sigma"]] == [0, 10, 20]
    report = (run_dir / "report.md").read_text()
    assert "## Verdict" in report and "Adam" in report
    for name in ("accuracy", "loss", "delta"):
        assert (run_dir / "figures" / f"{name}.png").stat().st_size > 1000
    with pytest.raises(NegdError, match="--out"):
        run_classification(TINY, run_dir, progress=False)


def test_presets_and_cli_errors(capsys):
    exp = classification_preset("digits", realizations=5, seed=3)
    assert (exp.realizations, exp.seed, exp.task) == (5, 3, "digits")
    with pytest.raises(NegdError, match="scale"):
        classification_preset("digits", "huge")
    with pytest.raises(NegdError, match="realizations"):
        classification_preset("digits", realizations=2)
    assert main(["reproduce", "digits", "--resume", "somewhere"]) == 2
    assert "--resume" in capsys.readouterr().err
