"""negd.analysis.verdict: the four verdicts, placed on each side of every threshold and of the 2-SE bound.

Each case sits 0.2-2% of a threshold away from it, so a changed threshold (holds at 0.5 instead of 0.05)
or a changed band (1 SE instead of 2) flips at least one exact assertion below.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from negd.analysis import build_report, make_run_dir
from negd.analysis.schema import SCHEMA_VERSION, check_summary
from negd.analysis.synthetic import make_placed_run
from negd.analysis.verdict import classify_band, decide, rows_verdict, trajectory_verdict
from negd.validation import NegdError

HOLDS_GAP = (0.001, 0.001)  # a loss gap that holds: 0.1% +- 0.1%

# (delta_ratio, SE, loss_gap, SE) -> the one verdict the rule gives
CASES = [
    # Delta_c/param_change around the holds bound max(r, 0) + 2 SE = 0.05
    ((0.01, 0.0199, *HOLDS_GAP), "holds"),        # upper 0.0498
    ((0.01, 0.0201, *HOLDS_GAP), "unresolved"),   # upper 0.0502, lower < 0.05
    # the 2-SE band, not 1 SE: 0.02 + 1 SE = 0.04 would hold
    ((0.02, 0.02, *HOLDS_GAP), "unresolved"),
    # around the weakens bound r - 2 SE = 0.05
    ((0.1, 0.0249, *HOLDS_GAP), "weakens"),       # lower 0.0502
    ((0.1, 0.0251, *HOLDS_GAP), "unresolved"),    # lower 0.0498
    # a resolved gap of 0.1 with a holds threshold at 0.5 would hold
    ((0.1, 0.01, *HOLDS_GAP), "weakens"),
    # around the fails bound r - 2 SE = 0.25
    ((0.3, 0.0249, *HOLDS_GAP), "fails"),         # lower 0.2502
    ((0.3, 0.0251, *HOLDS_GAP), "weakens"),       # lower 0.2498
    # a negative Delta_c does not pull the upper end below the threshold (finite beta at paper scale)
    ((-0.35, 0.2, *HOLDS_GAP), "unresolved"),
    ((-0.01, 0.0249, *HOLDS_GAP), "holds"),       # upper 0 + 0.0498
    ((-0.01, 0.0251, *HOLDS_GAP), "unresolved"),  # upper 0 + 0.0502
    # the loss gap around |g| + 2 SE = 0.05, either sign
    ((0.0, 0.001, 0.03, 0.0099), "holds"),
    ((0.0, 0.001, -0.03, 0.0099), "holds"),
    ((0.0, 0.001, -0.03, 0.0101), "unresolved"),
    ((0.0, 0.001, 0.02, 0.02), "unresolved"),      # 1 SE would hold
    # around |g| - 2 SE = 0.05 and = 0.25
    ((0.0, 0.001, -0.1, 0.0249), "weakens"),
    ((0.0, 0.001, 0.1, 0.0251), "unresolved"),
    ((0.0, 0.001, 0.1, 0.01), "weakens"),          # a loss threshold of 0.5 would hold
    ((0.0, 0.001, 0.3, 0.0249), "fails"),
    ((0.0, 0.001, -0.3, 0.0251), "weakens"),
    # combinations: a failing number decides; a resolved weakening beats an unresolved number
    ((0.3, 0.01, 0.0, 0.001), "fails"),
    ((0.01, 0.03, 0.3, 0.01), "fails"),
    ((0.01, 0.03, 0.1, 0.01), "weakens"),
    ((0.1, 0.01, 0.02, 0.02), "weakens"),
    ((0.01, 0.01, 0.02, 0.02), "unresolved"),
]


@pytest.mark.parametrize("numbers, label", CASES)
def test_decide_each_side_of_every_bound(numbers, label):
    assert decide(*numbers, realizations=100).label == label


def test_classify_band_states_and_undefined_numbers():
    assert classify_band(0.1, 0.01, 0.05, 0.25) == "weakens"
    assert classify_band(math.nan, 0.01, 0.05, 0.25) == "unresolved"
    assert classify_band(-0.1, 0.01, 0.05, 0.25) == "holds"  # a signed number judged as it is
    assert classify_band(-0.1, 0.03, 0.05, 0.25, nonnegative=True) == "unresolved"
    assert decide(math.nan, math.nan, 0.0, 0.001).label == "undetermined"


def test_unresolved_states_the_realizations_that_would_resolve_it():
    # finite beta at paper scale: -0.35 +- 0.2 with R = 100 -> 2 SE = 0.4 must shrink below 0.05: x64
    v = decide(-0.35, 0.2, 0.0003, 0.0007, realizations=100)
    assert v.label == "unresolved" and v.realizations_needed == pytest.approx(6400)
    assert "about 6,400 would" in v.sentence
    assert any("negative (-1.75 SE)" in r for r in v.reasons)
    # above the threshold: the lower end must clear 0.05; 0.1 - 2 x 0.03: (0.06/0.05)^2 = 1.44 x R
    assert decide(0.1, 0.03, 0.0, 0.001, realizations=50).realizations_needed == pytest.approx(72)
    # the larger of the two numbers' needs: loss gap 0.02 +- 0.02: (0.04/0.03)^2 = 1.78 x R
    assert decide(0.0, 0.001, 0.02, 0.02, realizations=9).realizations_needed == pytest.approx(16)
    assert decide(0.05, 0.01, 0.0, 0.001, realizations=9).realizations_needed == math.inf
    assert decide(0.1, 0.01, 0.0, 0.001, realizations=9).realizations_needed is None


def _placed(tmp_path, name, rows):
    run = make_placed_run(tmp_path / name, rows)
    build_report(run, figures=False)
    summary = json.loads((run / "summary.json").read_text())
    check_summary(summary)
    return summary, (run / "report.md").read_text()


def _row(ratio, ratio_se, gap=0.001, gap_se=0.001):
    return {"delta_ratio": ratio, "delta_ratio_se": ratio_se, "loss_gap": gap, "loss_gap_se": gap_se}


@pytest.mark.parametrize("numbers, label", [CASES[i] for i in (0, 1, 2, 3, 5, 6, 7, 8, 13, 17)])
def test_synthetic_run_gets_the_exact_verdict(tmp_path, numbers, label):
    summary, report = _placed(tmp_path, "run", [_row(*numbers)])
    assert summary["verdict"] == label and summary["verdict_final"] == label
    assert summary["delta_ratio"] == pytest.approx(numbers[0], abs=1e-12)
    assert summary["loss_gap_relative"] == pytest.approx(numbers[2], abs=1e-12)
    assert f"correspondence {label}" in report
    if label == "unresolved":
        assert summary["realizations_needed"] > 100 and "would, if the estimate stays" in report
    else:
        assert summary["realizations_needed"] is None


def test_verdict_covers_the_whole_trajectory(tmp_path):
    """Holds at the end, weakens in between: the run weakens; the worst snapshot and changes say where."""
    rows = [_row(0.01, 0.01), _row(0.1, 0.01), _row(0.12, 0.01), _row(0.01, 0.01)]
    summary, report = _placed(tmp_path, "dip", rows)
    labels = (summary["verdict"], summary["verdict_final"], summary["verdict_worst"])
    assert labels == ("weakens", "holds", "weakens")
    assert summary["verdict_t_worst"] == pytest.approx(0.75)
    assert summary["verdict_changes"] == [[0.25, "holds"], [0.5, "weakens"], [1.0, "holds"]]
    assert "weakens from t = 0.5; holds from t = 1" in report
    # unresolved at the end after holding: unresolved, with the realizations needed from the end
    summary, _ = _placed(tmp_path, "late", [_row(0.01, 0.01), _row(0.02, 0.02)])
    assert summary["verdict"] == "unresolved"
    assert summary["realizations_needed"] == pytest.approx(100 * 16 / 9)
    # a departure decides where it persists over two snapshots or is the last one, not as a lone draw
    summary, _ = _placed(tmp_path, "fail", [_row(0.3, 0.01), _row(0.3, 0.01), _row(0.01, 0.01)])
    assert summary["verdict"] == "fails" and summary["verdict_final"] == "holds"
    summary, _ = _placed(tmp_path, "end", [_row(0.01, 0.01), _row(0.3, 0.01)])
    assert summary["verdict"] == "fails"
    summary, report = _placed(tmp_path, "lone", [_row(0.01, 0.01), _row(0.3, 0.01), _row(0.01, 0.01)])
    assert (summary["verdict"], summary["verdict_worst"]) == ("holds", "fails")
    assert "fails from t = 0.667; holds from t = 1" in report


def test_trajectory_and_rows_verdict_agree():
    t = np.array([0.0, 0.5, 1.0])
    run = trajectory_verdict(t, np.array([np.nan, 0.1, 0.01]), np.array([np.nan, 0.01, 0.01]),
                             np.zeros(3), np.full(3, 0.001), realizations=10)
    assert run.label == "holds" and run.worst.label == "weakens"  # one weakening snapshot does not persist
    assert run.labels == ["undetermined", "weakens", "holds"]
    rows = [{"t": ti, "delta_corrected": d, "delta_corrected_se": s, "param_change": 2.0, "gap": 0.0,
             "gap_se": 0.002, "twin": 2.0}
            for ti, d, s in ((0.0, 0.0, 0.0), (0.5, 0.2, 0.02), (1.0, 0.02, 0.02))]
    run2, final = rows_verdict(rows, gap_key="gap", gap_se_key="gap_se", twin_loss_key="twin",
                               realizations=10)
    assert run2.label == run.label and run2.transitions == run.transitions
    assert final["delta_ratio"] == 0.01 and final["delta_ratio_upper"] == pytest.approx(0.03)


def test_noisy_synthetic_run_is_unresolved(tmp_path):
    """Few realizations with a large spread: the 2-SE band of Delta_c/param_change is far wider than 0.05."""
    run = make_run_dir(tmp_path / "noisy", realizations=4, variance=5e-3, bias=1e-3, t_final=0.1, n_arms=1,
                       seed=3)
    build_report(run, figures=False)
    s = json.loads((run / "summary.json").read_text())
    assert 2 * s["delta_ratio_se"] > 0.05
    assert s["verdict"] == "unresolved" and s["realizations_needed"] > 4


def test_summary_schema_signed_gaps_and_rejects_unknown_keys(tmp_path):
    summary, _ = _placed(tmp_path, "neg", [_row(0.0, 0.001, -0.03, 0.01)])
    assert summary["schema_version"] == SCHEMA_VERSION
    assert summary["loss_gap_relative"] == pytest.approx(-0.03)
    assert summary["loss_gap_in_se"] == pytest.approx(-3)
    assert summary["arms"][0]["loss_gap_relative"] == pytest.approx(-0.03)
    assert summary["loss_gap_max_relative"] == pytest.approx(-0.03)
    with pytest.raises(NegdError, match="not in the schema"):
        check_summary(summary | {"loss_gap_unsigned": 0.03})
    with pytest.raises(NegdError, match="must be >= 0"):
        check_summary(summary | {"loss_gap_relative_se": -0.1})
    with pytest.raises(NegdError, match="schema_version"):
        check_summary({k: v for k, v in summary.items() if k != "schema_version"})


def test_docs_carry_the_schema_table():
    from pathlib import Path

    from negd.analysis.schema import markdown_table

    docs = Path(__file__).resolve().parents[1] / "docs" / "report.md"
    assert markdown_table() in docs.read_text()
