"""Tests of negd.analysis: Delta/floor/corrected math, SE calibration, build_report on run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from negd.analysis import (
    build_report,
    delta_floor,
    delta_from_ensembles,
    delta_from_samples,
    delta_stats,
    json_safe,
    make_run_dir,
)
from negd.analysis.delta import _covariance_variance
from negd.analysis.synthetic import true_delta
from negd.validation import NegdError

REFERENCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "mc-gd-correspondence"

SUMMARY_KEYS = (
    "experiment",
    "scale",
    "sigma",
    "beta",
    "alpha",
    "lambda",
    "realizations",
    "steps",
    "t_final",
    "loss_gd_final",
    "loss_ne_mean_final",
    "loss_ne_se_final",
    "loss_of_mean_final",
    "delta_final",
    "delta_floor_final",
    "delta_corrected_final",
    "acceptance_measured",
    "acceptance_predicted",
    "wall_seconds",
    "delta_corrected_se_final",
    "param_change_final",
    "delta_ratio",
    "verdict",
    "arms",
)
FIGURES = ("weights.png", "loss.png", "delta.png", "params_final.png", "regime.png")


def test_delta_math_by_hand():
    g = np.array([1.0, 2.0, 0.0])
    m = np.array([1.5, 2.0, -1.0])
    v = np.array([0.2, 0.4, 0.6])
    st = delta_stats(g, m, v, realizations=4)
    assert st.delta == pytest.approx((0.25 + 0 + 1) / 3)
    assert st.floor == pytest.approx((0.2 + 0.4 + 0.6) / 4 / 3)
    assert st.corrected == pytest.approx(st.delta - st.floor)
    # batched [S, N] gives the same per row
    stb = delta_stats(np.stack([g, g]), np.stack([m, g]), np.stack([v, v]), 4)
    assert stb.delta[0] == pytest.approx(st.delta) and stb.delta[1] == 0.0


def test_delta_from_samples_matches_definition():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 5))
    g = rng.normal(size=5)
    st = delta_from_samples(g, x)
    assert st.delta == pytest.approx(np.mean((g - x.mean(0)) ** 2))
    assert st.floor == pytest.approx(np.mean(x.var(0, ddof=1)) / 7)
    assert delta_floor(x, ddof=0) == pytest.approx(np.mean(x.var(0)) / 7)


def test_delta_bad_input():
    with pytest.raises(NegdError, match="realizations"):
        delta_stats(np.zeros(3), np.zeros(3), np.zeros(3), 0)
    with pytest.raises(NegdError, match="shapes"):
        delta_stats(np.zeros(3), np.zeros(4), np.zeros(3), 5)
    nan = delta_stats(np.zeros(3), np.zeros(3), np.zeros(3), 1)
    assert math.isnan(nan.floor) and math.isnan(nan.corrected)


@pytest.mark.parametrize("bias_scale", [0.0, 0.3])
def test_corrected_delta_unbiased_and_se_calibrated(bias_scale):
    """Synthetic Gaussian ensembles with known mu, v: z = (Delta_c - true)/SE over many seeds.

    n = 600 independent ensembles of R = 20 realizations, N = 100 parameters. Unbiased: the mean
    of Delta_c is within 4 standard errors (std/sqrt(n)) of the true (1/N) sum b_i^2. Calibrated:
    std(z) is 1 within 4 SE of a sample std (1/sqrt(2n) = 0.029) plus 0.05 for the t-like tails
    that come from estimating the SE itself with R = 20; mean(z) within 4/sqrt(n) + 0.05.
    """
    n_ens, r, n = 600, 20, 100
    rng = np.random.default_rng(12345)
    mu = rng.normal(size=n)
    v = rng.uniform(0.5, 2.0, size=n)
    b = bias_scale * rng.normal(size=n)
    truth = float(np.mean(b**2))
    x = mu + np.sqrt(v) * rng.normal(size=(n_ens, r, n))
    st = delta_from_samples(np.broadcast_to(mu + b, (n_ens, n)), x)
    corrected, se = np.asarray(st.corrected), np.asarray(st.corrected_se)
    assert abs(corrected.mean() - truth) < 4 * corrected.std(ddof=1) / math.sqrt(n_ens)
    # the raw Delta is biased upward by the floor: the test can fail if the correction is dropped
    assert np.asarray(st.delta).mean() - truth > 10 * corrected.std(ddof=1) / math.sqrt(n_ens)
    z = (corrected - truth) / se
    assert abs(z.mean()) < 4 / math.sqrt(n_ens) + 0.05
    assert abs(z.std(ddof=1) - 1.0) < 4 / math.sqrt(2 * n_ens) + 0.05


def test_json_safe():
    assert json_safe({"a": math.inf, "b": math.nan, "c": [np.float64(-math.inf), np.int64(3)]}) == {
        "a": "inf",
        "b": None,
        "c": ["-inf", 3],
    }


def _check_outputs(run_dir: Path) -> dict:
    pd = pytest.importorskip("pandas")
    for name in ("summary.json", "report.md", "timeseries.csv"):
        assert (run_dir / name).is_file(), name
    summary = json.loads((run_dir / "summary.json").read_text())
    missing = [k for k in SUMMARY_KEYS if k not in summary]
    assert not missing, missing
    table = pd.read_csv(run_dir / "timeseries.csv")
    for col in ("arm", "t", "delta", "delta_floor", "delta_corrected", "delta_corrected_se", "gd_loss"):
        assert col in table.columns
    return {"summary": summary, "table": table, "report": (run_dir / "report.md").read_text()}


def test_build_report_complete_run(tmp_path):
    run = make_run_dir(tmp_path / "run", bias=1e-2, seed=1)
    report = build_report(run)
    assert report == run / "report.md"
    out = _check_outputs(run)
    s = out["summary"]
    for name in FIGURES:
        assert (run / "figures" / name).stat().st_size > 1000, name
    assert s["beta"] == "inf" and s["state"] == "complete" and not s["partial"]
    assert len(out["table"]) == 3 * 11 and sorted(out["table"]["arm"].unique()) == [0, 1, 2]
    # the corrected Delta recovers the known truth of each arm within 4 SE
    for arm in s["arms"]:
        truth = true_delta(1e-2, arm["sigma"] / s["sigma"], 1.0, 1.0)
        assert abs(arm["delta_corrected_final"] - truth) < 4 * arm["delta_corrected_se_final"]
    # Delta ~ sigma^2 by construction: the fitted slope is 2 within 4 SE
    trend = s["sigma_trend"]
    assert abs(trend["slope"] - 2.0) < 4 * trend["slope_se"]
    assert s["verdict"] == "holds" and "correspondence holds" in out["report"]
    assert "![delta](figures/delta.png)" in out["report"]


def test_build_report_partial_run(tmp_path):
    run = make_run_dir(tmp_path / "run", interrupted=True, seed=2)
    build_report(run)
    out = _check_outputs(run)
    s = out["summary"]
    assert s["partial"] and s["state"] == "interrupted"
    assert s["t_final"] < s["t_final_planned"]
    assert s["arms"][2]["verdict"] == "missing" and s["arms"][2]["delta_corrected_final"] is None
    assert "Partial run" in out["report"] and "sigma/4" in out["report"]
    assert sorted(out["table"]["arm"].unique()) == [0, 1]
    for name in FIGURES:
        assert (run / "figures" / name).is_file(), name


def test_build_report_only_initial_snapshot(tmp_path):
    """An arm interrupted right after t = 0 gives an 'undetermined' verdict, not a crash."""
    run = make_run_dir(tmp_path / "run", n_snapshots=3, n_arms=1, seed=4)
    with np.load(run / "arms" / "0" / "snapshots.npz") as npz:
        arrays = {k: (npz[k][:1] if k != "trajectory_ids" else npz[k]) for k in npz.files}
    np.savez(run / "arms" / "0" / "snapshots.npz", **arrays)
    build_report(run, figures=False)
    s = json.loads((run / "summary.json").read_text())
    assert s["verdict"] == "undetermined" and s["partial"]


def test_verdict_changes_when_delta_is_large(tmp_path):
    small = make_run_dir(tmp_path / "small", bias=1e-2, seed=5)
    large = make_run_dir(tmp_path / "large", bias=0.5, seed=5)
    build_report(small, figures=False)
    build_report(large, figures=False)
    v_small = json.loads((small / "summary.json").read_text())["verdict"]
    v_large = json.loads((large / "summary.json").read_text())["verdict"]
    assert v_small == "holds" and v_large == "fails"
    assert "correspondence fails" in (large / "report.md").read_text()


def test_build_report_rejects_non_run_dir(tmp_path):
    with pytest.raises(NegdError, match="run_dir"):
        build_report(tmp_path)
    with pytest.raises(NegdError, match="run_dir"):
        build_report(tmp_path / "nope")


@pytest.mark.skipif(
    not REFERENCE.is_dir(),
    reason="authors' reference data ../shared/reference/mc-gd-correspondence not present",
)
def test_reference_data_delta_at_floor():
    """Authors' ten beta=inf trajectories: Delta(t=1) = 3.7e-5, floor 3.1e-5 with ddof=0 (README);
    the corrected Delta is consistent with zero within 2 SE (ten trajectories cannot resolve it)."""
    gd = np.load(REFERENCE / "gd_traj.npz")["params"]
    ne = np.stack([np.load(REFERENCE / f"mc_traj_{i}.npz")["params"] for i in range(10)], axis=1)
    st = delta_from_samples(gd[-1], ne[-1])
    assert st.delta == pytest.approx(3.7e-5, rel=0.02)
    assert delta_floor(ne[-1], ddof=0) == pytest.approx(3.1e-5, rel=0.02)
    assert st.floor == pytest.approx(3.1e-5 * 10 / 9, rel=0.02)  # the unbiased floor
    assert abs(st.corrected) < 2 * st.corrected_se
    change = np.mean((gd[-1] - gd[0]) ** 2)
    assert (st.corrected + 2 * st.corrected_se) / change < 0.05


def test_langevin_delta_reduces_to_noiseless_and_by_hand():
    rng = np.random.default_rng(7)
    g, m, v = rng.normal(size=(3, 2, 6))
    v = np.abs(v)
    plain = delta_stats(g, m, v, 10)
    zero_twin = delta_stats(g, m, v, 10, twin_var=np.zeros_like(v), twin_realizations=5)
    for a, b in zip(
        (plain.delta, plain.floor, plain.corrected, plain.corrected_se),
        (zero_twin.delta, zero_twin.floor, zero_twin.corrected, zero_twin.corrected_se),
    ):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    q = np.full_like(v, 0.3)
    st = delta_stats(g, m, v, 10, twin_var=q, twin_realizations=5)
    np.testing.assert_allclose(st.floor, (v / 10 + q / 5).mean(axis=1))
    np.testing.assert_allclose(st.corrected, st.delta - st.floor)
    assert np.all(st.corrected_se > plain.corrected_se)  # the twin's noise adds uncertainty
    with pytest.raises(NegdError, match="twin_realizations"):
        delta_stats(g, m, v, 10, twin_var=q)
    with pytest.raises(NegdError, match="twin_var"):
        delta_stats(g, m, v, 10, twin_var=q[:, :3], twin_realizations=5)
    assert np.all(np.isnan(delta_stats(g, m, v, 10, twin_var=q, twin_realizations=1).corrected))


@pytest.mark.parametrize("bias_scale", [0.0, 0.3])
def test_langevin_corrected_delta_unbiased_and_se_calibrated(bias_scale):
    """As test_corrected_delta_unbiased_and_se_calibrated, with both means noisy: NE ensembles of
    R = 20 and Langevin-twin ensembles of R_L = 10 (different variances), n = 600 pairs, N = 100.
    Same tolerances (4 SE of the mean / of a sample std, plus 0.05 for the t-like tails)."""
    n_ens, r, r_l, n = 600, 20, 10, 100
    rng = np.random.default_rng(54321)
    mu = rng.normal(size=n)
    v = rng.uniform(0.5, 2.0, size=n)
    u = rng.uniform(0.2, 3.0, size=n)
    b = bias_scale * rng.normal(size=n)
    truth = float(np.mean(b**2))
    x = mu + np.sqrt(v) * rng.normal(size=(n_ens, r, n))
    x_l = mu + b + np.sqrt(u) * rng.normal(size=(n_ens, r_l, n))
    st = delta_from_ensembles(x_l, x)
    corrected, se = np.asarray(st.corrected), np.asarray(st.corrected_se)
    sem = corrected.std(ddof=1) / math.sqrt(n_ens)
    assert abs(corrected.mean() - truth) < 4 * sem
    # Ignoring the twin's own noise (the noiseless floor) leaves a bias: the test can fail.
    noiseless = delta_stats(x_l.mean(axis=1), x.mean(axis=1), x.var(axis=1, ddof=1), r)
    assert np.asarray(noiseless.corrected).mean() - truth > 10 * sem
    # The true variance (equation (4) of negd.analysis.delta) matches the spread within 4 SE.
    w = v / r + u / r_l
    own = 2 * v**2 / (r**2 * (r - 1)) + 2 * u**2 / (r_l**2 * (r_l - 1))
    var4 = np.sum(4 * b**2 * w + 2 * w**2 + own) / n**2
    assert abs(corrected.std(ddof=1) / math.sqrt(var4) - 1) < 4 / math.sqrt(2 * n_ens)
    z = (corrected - truth) / se
    assert abs(z.mean()) < 4 / math.sqrt(n_ens) + 0.05
    assert abs(z.std(ddof=1) - 1.0) < 4 / math.sqrt(2 * n_ens) + 0.05


@pytest.mark.parametrize("twin, name", [("langevin", "**Langevin ensemble**"),
                                        ("matched", "**moment-matched Langevin ensemble**")])
def test_build_report_langevin_twin(tmp_path, twin, name):
    run = make_run_dir(tmp_path / "run", bias=1e-2, seed=1, twin=twin, twin_realizations=20)
    build_report(run)
    out = _check_outputs(run)
    s = out["summary"]
    assert s["twin"] == twin and s["twin_realizations"] == 20 and name in out["report"]
    assert s["loss_twin_final"] == s["loss_gd_final"] and s["loss_twin_se_final"] > 0
    for arm in s["arms"]:
        truth = true_delta(1e-2, arm["sigma"] / s["sigma"], 1.0, 1.0)
        assert abs(arm["delta_corrected_final"] - truth) < 4 * arm["delta_corrected_se_final"]
    assert s["verdict"] == "holds"
    assert "Langevin ensemble" in out["report"] and "Var_L(x_i)/R_L" in out["report"]
    assert {"gd_loss_se", "gd_loss_of_mean"} <= set(out["table"].columns)
    for name in FIGURES:
        assert (run / "figures" / name).is_file(), name
    large = make_run_dir(tmp_path / "large", bias=0.5, seed=1, twin=twin)
    build_report(large, figures=False)
    assert json.loads((large / "summary.json").read_text())["verdict"] == "fails"


def test_report_reads_runs_without_twin_fields(tmp_path):
    """Run directories written before the Langevin twin: no twin key, no new arrays."""
    run = make_run_dir(tmp_path / "old", seed=3)
    cfg = json.loads((run / "config.json").read_text())
    cfg.pop("twin")
    (run / "config.json").write_text(json.dumps(cfg))
    build_report(run, figures=False)
    s = json.loads((run / "summary.json").read_text())
    assert s["twin"] == "noiseless" and s["twin_realizations"] is None and s["loss_twin_se_final"] == 0
    assert "noiseless" in (run / "report.md").read_text()
    # A Langevin run whose arrays lack the twin's variance is reported as a broken arm, not misread.
    lang = make_run_dir(tmp_path / "lang", seed=3, n_arms=1, twin="langevin")
    with np.load(lang / "arms" / "0" / "snapshots.npz") as npz:
        arrays = {k: npz[k] for k in npz.files if k != "gd_param_var"}
    np.savez(lang / "arms" / "0" / "snapshots.npz", **arrays)
    build_report(lang, figures=False)
    s = json.loads((lang / "summary.json").read_text())
    assert s["arms"][0]["verdict"] == "missing" and "gd_param_var" in s["arms"][0]["problem"]


def test_unresolved_large_delta_is_not_a_failure() -> None:
    """Delta_c/param_change = 0.76 +- 0.39 (2 SE = 0.78): too noisy to call a failure."""
    from negd.analysis.metrics import verdict

    base = {"t_final": 1.0, "loss_gap_relative": 0.01, "loss_gap_in_se": 1.0}
    unresolved = verdict({**base, "delta_ratio": 0.76, "delta_ratio_upper": 0.76 + 0.78})
    assert unresolved.label == "unresolved"
    resolved = verdict({**base, "delta_ratio": 0.76, "delta_ratio_upper": 0.76 + 0.2})
    assert resolved.label == "fails"


def _explicit_covariance_se(g, x, x_l=None):
    """Equation (5) of negd.analysis.delta and its twin form, written with explicit N x N matrices."""
    def t2(samples):
        r = samples.shape[0]
        cov = np.cov(samples, rowvar=False)
        return (r - 1) ** 2 / ((r - 2) * (r + 1)) * (np.trace(cov @ cov) - np.trace(cov) ** 2 / (r - 1)), cov

    r, n = x.shape
    t2x, cx = t2(x)
    if x_l is None:
        d = g - x.mean(0)
        var = 4 * d @ cx @ d / r - 2 * t2x * (r - 2) / (r**2 * (r - 1))
        lower = 2 * t2x / (r * (r - 1))
    else:
        rl = x_l.shape[0]
        t2y, cy = t2(x_l)
        d = x_l.mean(0) - x.mean(0)
        w2 = t2x / r**2 + 2 * np.trace(cx @ cy) / (r * rl) + t2y / rl**2
        own = 2 * t2x / (r**2 * (r - 1)) + 2 * t2y / (rl**2 * (rl - 1))
        var = 4 * d @ (cx / r + cy / rl) @ d - 2 * w2 + own
        lower = 2 * w2 + own
    return math.sqrt(max(var, lower)) / n


@pytest.mark.parametrize("r, n", [(5, 40), (40, 5), (3, 3)])
def test_covariance_se_matches_explicit_matrices(r, n):
    """Both sides of the Gram-matrix shortcut (R < N and R > N) against explicit covariances."""
    rng = np.random.default_rng(r * 100 + n)
    x = rng.normal(size=(r, n)) + rng.normal(size=(r, 1))
    g = rng.normal(size=n)
    assert delta_from_samples(g, x).corrected_se == pytest.approx(_explicit_covariance_se(g, x), rel=1e-10)
    x_l = 0.5 * rng.normal(size=(r + 2, n)) + rng.normal(size=(r + 2, 1))
    assert delta_from_ensembles(x_l, x).corrected_se == pytest.approx(
        _explicit_covariance_se(None, x, x_l), rel=1e-10)
    batched = delta_from_samples(np.stack([g, g]), np.stack([x, x]))
    np.testing.assert_allclose(batched.corrected_se, delta_from_samples(g, x).corrected_se, rtol=1e-12)


@pytest.mark.parametrize("twin", [False, True])
def test_covariance_se_calibrated_with_correlated_parameters(twin):
    """Ensembles whose parameters share a common factor (correlation 0.5, as neuroevolution's accepted
    moves create): n = 2000 independent ensembles of R = 40 (and twins of R_L = 20), N = 60, b != 0.

    * The per-parameter SE ignores the correlation and is too small: its RMS is < 0.6 of the true
      spread (the check can fail).
    * The covariance estimate of Var[Delta_c] is unbiased: its mean over ensembles matches the sample
      variance of Delta_c within 4 standard errors of their ratio (estimated from the same ensembles).
    * The reported SE (never below the b = 0 bound) is not too small: mean SE^2 / spread >= 1 - 4 SE,
      and not grossly large (< 2).
    """
    n_ens, r, r_l, n, rho = 2000, 40, 20, 60, 0.5
    rng = np.random.default_rng(2024 + twin)
    v = rng.uniform(0.5, 2.0, size=n)
    b = 0.3 * rng.normal(size=n)

    def draw(k):
        return np.sqrt(v) * (math.sqrt(rho) * rng.normal(size=(n_ens, k, 1))
                             + math.sqrt(1 - rho) * rng.normal(size=(n_ens, k, n)))

    x = draw(r)
    if twin:
        x_l = b + draw(r_l)
        st = delta_from_ensembles(x_l, x)
        naive = delta_stats(x_l.mean(1), x.mean(1), x.var(1, ddof=1), r, twin_var=x_l.var(1, ddof=1),
                            twin_realizations=r_l)
        d, yc = x_l.mean(1) - x.mean(1), x_l - x_l.mean(1, keepdims=True)
    else:
        st = delta_from_samples(np.broadcast_to(b, (n_ens, n)), x)
        naive = delta_stats(np.broadcast_to(b, (n_ens, n)), x.mean(1), x.var(1, ddof=1), r)
        d, yc = b - x.mean(1), None
    corrected = np.asarray(st.corrected)
    spread = corrected.var(ddof=1)
    assert math.sqrt(np.mean(np.asarray(naive.corrected_se) ** 2)) < 0.6 * math.sqrt(spread)
    spread_rel_se = ((corrected - corrected.mean()) ** 2).std(ddof=1) / spread / math.sqrt(n_ens)

    def ratio_and_se(estimates):
        ratio = estimates.mean() / spread
        return ratio, ratio * math.hypot(estimates.std(ddof=1) / estimates.mean() / math.sqrt(n_ens),
                                         spread_rel_se)

    unbiased, _ = _covariance_variance(d, x - x.mean(1, keepdims=True), yc)
    ratio, ratio_se = ratio_and_se(unbiased / n**2)
    assert abs(ratio - 1) < 4 * ratio_se
    ratio, ratio_se = ratio_and_se(np.asarray(st.corrected_se) ** 2)
    assert 1 - 4 * ratio_se < ratio < 2


def test_spread_parameter_by_hand():
    """s = tr(H) sigma^2 sum_k dn_k A_k / (2 U_twin); 0 for an ensemble twin, NaN without tr(H)."""
    from negd.analysis.metrics import spread_parameter
    from negd.analysis.rundir import ArmData

    arm = ArmData(index=0, label="sigma", sigma=0.01, lam=1.0, t_final=1.0, realizations=4, ne_steps=300,
                  arrays=None)
    series = {"ne_step": np.array([0, 100, 300]), "acceptance_predicted": np.array([np.nan, 0.5, 0.4]),
              "gd_loss": np.array([1.0, 0.5, 0.25]), "trace_hessian": np.array([1.0, 2.0, 3.0])}
    variance = 0.01**2 * (100 * 0.5 + 200 * 0.4)
    assert spread_parameter(arm, series) == pytest.approx(3.0 * variance / (2 * 0.25), rel=1e-12)
    arm.twin = "langevin"
    assert spread_parameter(arm, series) == 0.0
    arm.twin = "noiseless"
    series["trace_hessian"] = np.array([1.0, 2.0, np.nan])
    assert math.isnan(spread_parameter(arm, series))
