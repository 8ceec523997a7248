"""negd.theory.population: quadrature against known values, limits and Monte Carlo of M_K itself."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from negd import theory
from negd.rules import NormalizedGradientDescent
from negd.theory.population import (
    drift_per_evaluation,
    expected_max_normal,
    population_moments,
    population_twin_rates,
)
from negd.twins import population_twin
from negd.validation import NegdError


@pytest.mark.parametrize("k, c1k", [(1, 0.0), (2, 0.5642), (4, 1.0294), (10, 1.5388)])
def test_progress_coefficients(k, c1k):
    # Beyer's c_{1,K} to the 4 printed decimals; c_{1,2} = 1/sqrt(pi) exactly.
    assert expected_max_normal(k) == pytest.approx(c1k, abs=5e-5)
    if k == 2:
        assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), abs=1e-12)


def test_k1_reduces_to_the_paper_rule():
    for c in (0.0, 0.5, 2.0):
        m = population_moments(1, "elitist", c)
        assert m.acceptance == pytest.approx(theory.curvature_acceptance(c), abs=1e-12)
        assert m.drift == pytest.approx(theory.normal_pdf(c), abs=1e-12)
    for z in (0.3, 1.0, 5.0):  # finite beta, linear loss: acceptance A(z), drift z erfcx/2, M2(z)
        m = population_moments(1, "elitist", 0.0, z)
        assert m.acceptance == pytest.approx(theory.linear_acceptance(z), abs=1e-12)
        assert m.drift == pytest.approx(z * theory.linear_drift_factor(z) / 2, abs=1e-12)
        assert m.second_moment == pytest.approx(theory.linear_second_moment(z), abs=1e-12)
    comma = population_moments(1, "comma")
    assert (comma.acceptance, comma.drift, comma.second_moment) == pytest.approx((1, 0, 1), abs=1e-12)


@pytest.mark.parametrize("k", [2, 3, 8, 16])
def test_moments_against_sampled_maxima(k):
    # 400 000 sampled maxima: each moment within 4 SE of its sample mean.
    draws = torch.randn(400_000, k, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
    m = draws.max(dim=1).values
    for selection, kept in (("comma", m), ("elitist", m.clamp_min(0))):
        moments = population_moments(k, selection)
        for value, sample in ((moments.drift, kept), (moments.second_moment, kept**2)):
            assert abs(sample.mean().item() - value) <= 4 * sample.std().item() / math.sqrt(len(m))
    assert population_moments(k, "elitist").acceptance == pytest.approx(1 - 2.0**-k, abs=1e-12)
    c = 1.0
    tail = torch.where(m > c, m, torch.zeros_like(m))
    predicted = population_moments(k, "elitist", c).drift
    assert abs(tail.mean().item() - predicted) <= 4 * tail.std().item() / math.sqrt(len(m))


def test_comma_raises_the_loss_once_c_exceeds_expected_max():
    c1k = expected_max_normal(4)
    assert population_moments(4, "comma", c1k - 0.1).loss_change < 0
    assert population_moments(4, "comma", c1k + 0.1).loss_change > 0
    assert population_moments(4, "elitist", c1k + 0.1).loss_change < 0  # elitist never goes up


def test_drift_per_evaluation():
    assert drift_per_evaluation(1, "elitist") == pytest.approx(1 / math.sqrt(2 * math.pi))
    # Linear loss: a population never beats K single-mutant steps per evaluation ...
    for k in (2, 4, 16):
        assert drift_per_evaluation(k, "elitist") < drift_per_evaluation(1, "elitist")
    # ... and with strong curvature it almost catches up (rare improvements add up).
    ratio = drift_per_evaluation(4, "elitist", 3.0) / drift_per_evaluation(1, "elitist", 3.0)
    assert 0.9 < ratio < 1.0


def test_twin_mapping():
    alpha, s = population_twin_rates(0.1, 4, "elitist")
    assert alpha == pytest.approx(0.1 * population_moments(4, "elitist").drift)
    assert s == pytest.approx(0.1 * math.sqrt(1 - 2.0**-4))
    from negd.rules import Population

    twin = population_twin(Population(0.1, k=4))
    assert isinstance(twin, NormalizedGradientDescent)
    assert (twin.alpha, twin.noise) == pytest.approx((alpha, s))
    assert population_twin(Population(0.1, k=4), noise=False).noise == 0.0
    with pytest.raises(NegdError, match="beta"):
        population_twin(Population(0.1, k=4, beta=2.0))


def test_bad_input():
    with pytest.raises(NegdError, match="k:"):
        population_moments(0, "comma")
    with pytest.raises(NegdError, match="selection:"):
        population_moments(2, "plus")
    with pytest.raises(NegdError, match="c:"):
        population_moments(2, "comma", math.nan)
    with pytest.raises(NegdError, match="z:"):
        population_moments(2, "elitist", 0.0, -1.0)


def _quadratic_n10():
    """N = 10, anisotropic curvature (eigenvalues 0.1 ... 3), |g| = 1, sigma with c = 0.6."""
    rng = np.random.default_rng(10)
    g = rng.normal(size=10)
    g /= np.linalg.norm(g)
    h = np.linspace(0.1, 3.0, 10)
    sigma = 2 * 0.6 / h.sum()
    return g, h, sigma


@pytest.mark.parametrize("selection", ["comma", "elitist"])
def test_small_n_population_warns_and_monte_carlo_matches_the_rule(selection):
    """N = 10: the Gaussian form warns (GaussianScopeWarning) and misses the drift of
    negd.rules.Population by many SE; population_moments_mc matches the rule within 4 combined SE."""
    from negd.rules import Population
    from negd.theory.population import GaussianScopeWarning, population_moments_mc

    g, h, sigma = _quadratic_n10()
    c = sigma * h.sum() / 2
    with pytest.warns(GaussianScopeWarning, match="N = 10"):
        gaussian = population_moments(4, selection, c, n_params=10)
    mc = population_moments_mc(4, selection, g, h, sigma, samples=200_000, seed=1)
    gt, ht = torch.tensor(g), torch.tensor(h)

    def loss(p):
        return p @ gt + 0.5 * (p * p) @ ht

    r = 100_000
    rule = Population(sigma, k=4, selection=selection)
    state = rule.step(rule.init(torch.zeros(10, dtype=torch.float64), loss, seed=3, realizations=r), loss)
    along = -(state.params @ gt).numpy() / sigma  # -u.dx/sigma (u = g, |g| = 1)
    moved = state.accepted.numpy().astype(float)
    for measured, predicted, predicted_se in ((along, mc.moments.drift, mc.se.drift),
                                              (moved, mc.moments.acceptance, mc.se.acceptance)):
        se = math.hypot(measured.std(ddof=1) / math.sqrt(r), predicted_se)
        assert abs(measured.mean() - predicted) <= 4 * se
    drift_se = math.hypot(along.std(ddof=1) / math.sqrt(r), mc.se.drift)
    assert abs(along.mean() - gaussian.drift) > 10 * drift_se  # the Gaussian form is measurably off here
    # across g the second moment is not the acceptance once the loss is curved (only for a linear loss)
    assert abs(mc.across_second_moment - mc.moments.acceptance) > 4 * mc.across_second_moment_se


def test_gaussian_scope_is_quiet_where_it_applies():
    import warnings

    from negd.theory.population import gaussian_scope, population_moments_mc

    assert gaussian_scope(10_000, 0.5, 0.01) is None and gaussian_scope(10, 0.0) is None
    assert "c_spread" in gaussian_scope(c_spread=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        population_moments(4, "comma", 0.5, n_params=10_000, c_spread=0.01)
    # linear loss: the Monte Carlo form reproduces the Gaussian one within 4 SE at any N
    mc = population_moments_mc(4, "comma", np.ones(3), np.zeros(3), 0.1, samples=100_000, seed=2)
    assert abs(mc.moments.drift - population_moments(4, "comma").drift) < 4 * mc.se.drift
    assert abs(mc.across_second_moment - 1.0) < 4 * mc.across_second_moment_se
