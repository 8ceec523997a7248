"""negd.analysis.diagnosis and .branches: predictions with their error, attribution, the per-parameter view
and the two-branch test."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from negd.analysis import build_report, make_run_dir
from negd.analysis.branches import branch_test, split_statistic
from negd.analysis.diagnosis import acceptance_misses, attribute, attributions, pooled, scatter_se
from negd.analysis.synthetic import true_delta


def test_scatter_se_recovers_the_noise_of_a_smooth_series():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 2001)
    x = np.sin(3 * t) + 0.01 * rng.normal(size=t.size)
    # SE of the estimate of a standard deviation from n = 2000 second differences (correlated in pairs):
    # well below 10%; the smooth part contributes (9 dt^2)^2 ~ 1e-11, nothing
    assert scatter_se(x) == pytest.approx(0.01, rel=0.1)
    assert math.isnan(scatter_se(np.array([1.0, 2.0])))


def test_pooled_is_an_inverse_variance_mean_of_three():
    values = np.array([1.0, 2.0, 4.0, 8.0])
    se = np.array([1.0, 1.0, 2.0, 1.0])
    mean, mean_se = pooled(values, se)
    w = np.array([1.0, 1.0, 0.25])
    assert mean[1] == pytest.approx(np.sum(w * values[:3]) / w.sum())
    assert mean_se[1] == pytest.approx(1 / math.sqrt(w.sum()))
    assert mean[0] == pytest.approx(1.5) and mean_se[0] == pytest.approx(1 / math.sqrt(2))
    # no stored SE: equal weights and the scatter's SE over sqrt(3)
    mean, mean_se = pooled(np.array([0.0, 1.0, 0.0, 1.0, 0.0]))
    assert mean[2] == pytest.approx(2 / 3)
    assert mean_se[2] == pytest.approx(scatter_se(np.array([0, 1, 0, 1, 0.0])) / math.sqrt(3))


def test_acceptance_miss_counts_both_errors():
    series = {"acceptance": np.array([np.nan, 0.40, 0.40]), "acceptance_se": np.array([np.nan, 0.003, 0.003]),
              "acceptance_predicted": np.array([0.5, 0.5, 0.5]),
              "acceptance_predicted_se": np.array([0.004, 0.004, 0.004])}
    miss = acceptance_misses(series)
    pred_se = 0.5 * math.hypot(0.004 / math.sqrt(2), 0.004 / math.sqrt(3))  # pooled ends of interval 1
    assert miss["predicted"][1] == pytest.approx(0.5)
    assert miss["predicted_se"][1] == pytest.approx(pred_se)
    assert miss["miss_in_se"][1] == pytest.approx(-0.1 / math.hypot(0.003, pred_se))


def test_attribution_names_the_largest_small_parameter_where_the_gap_peaks():
    n = 5
    series = {"t": np.linspace(0, 4, n), "z": np.array([0.0, 0.05, 0.2, 0.1, 0.09]),
              "c": np.array([0.0, -0.01, 0.02, 0.3, 0.03]), "s": np.array([0.0, 0.001, 0.01, 0.02, 0.04]),
              "loss_gap_relative": np.array([0.0, 0.01, 0.055, 0.02, 0.001]),
              "loss_gap_relative_se": np.full(n, 0.008),
              "delta_ratio": np.array([np.nan, 0.01, 0.02, 0.2, 0.05]), "delta_ratio_se": np.full(n, 0.01),
              "acceptance": np.array([np.nan, 0.97, 0.96, 0.90, 0.97]), "acceptance_se": np.full(n, 0.001),
              "acceptance_predicted": np.array([0.97, 0.97, 0.97, 0.97, 0.97]),
              "acceptance_predicted_se": np.full(n, 0.001)}
    a = attributions(series)
    gap = a["loss_gap"]
    assert (gap["t"], gap["parameter"], gap["parameter_value"]) == (2.0, "z", 0.2)
    assert a["loss_gap"]["value"] == 0.055 and a["loss_gap"]["in_se"] == pytest.approx(0.055 / 0.008)
    assert (a["delta_ratio"]["t"], a["delta_ratio"]["parameter"]) == (3.0, "c")
    assert (a["acceptance"]["t"], a["acceptance"]["parameter"]) == (3.0, "c")
    # beta = inf: z is infinite, not a small parameter, and is left out
    series["z"] = np.full(n, np.inf)
    assert attribute(series, 2)["parameter"] == "c" and attribute(series, 4)["parameter"] == "s"
    # each relative to its limit (c: 0.1, s: 0.05): |c| = 0.03 < 0.1 and s = 0.04 < 0.05 -> s, not exceeding
    assert attribute(series, 4)["exceeds_limit"] is False and a["loss_gap"]["exceeds_limit"] is True
    series["s"] = -series["s"]  # negative curvature: the size of s counts
    assert attribute(series, 4)["parameter"] == "s" and attribute(series, 4)["s"] == 0.04


def test_split_statistic_of_two_clusters_and_of_a_line():
    two = np.array([[-1.0, 0], [-1.1, 0], [-0.9, 0], [1.0, 0], [1.1, 0], [0.9, 0]])
    b, smaller = split_statistic(two)
    assert b == pytest.approx(1 - 0.04 / 6.04) and smaller == 3
    assert math.isnan(split_statistic(np.ones((5, 3)))[0])


def test_two_branch_ensemble_is_flagged_and_one_cloud_is_not(tmp_path):
    """Realizations split into two branches after t = T/2 (make_run_dir(branches=...)): the branch test on
    the 8 stored trajectories flags them (p < 0.01); the same run without branches is not flagged. The
    ensemble mean is unchanged by the symmetric split, so the all-parameter Delta_c still finds the truth."""
    flagged = {}
    for branches in (0.0, 0.3):
        run = make_run_dir(tmp_path / f"b{branches}", n_arms=1, trajectories=8, branches=branches, seed=1)
        build_report(run, figures=False)
        s = json.loads((run / "summary.json").read_text())
        flagged[branches] = s["parameter_view"]["branches"]
        truth = true_delta(1e-2, 1.0, 1.0, 1.0)
        assert abs(s["delta_corrected_final"] - truth) < 4 * s["delta_corrected_se_final"]
        report = (run / "report.md").read_text()
        assert ("split into two branches" in report) == (branches > 0)
    assert flagged[0.3]["bimodal"] and flagged[0.3]["p_value"] < 0.01 and flagged[0.3]["smaller_branch"] == 4
    assert not flagged[0.0]["bimodal"] and flagged[0.0]["p_value"] > 0.05


def test_branch_test_false_flags_stay_near_its_level():
    """One Gaussian cloud of 8 points in 5 dimensions with unequal scales: the flag (p < 0.01) fires in
    ~1% of 60 ensembles; 0 or 1 or 2 flags (binomial(60, 0.01): P(>= 3) = 2%)."""
    rng = np.random.default_rng(7)
    flags = sum(branch_test(rng.normal(size=(8, 5)) * rng.uniform(0.1, 2, 5), seed=i,
                            bootstraps=400)["bimodal"] for i in range(60))
    assert flags <= 2
