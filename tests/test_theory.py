"""Tests of negd.theory: closed forms against integration and one-step neuroevolution statistics.

Statistical checks run ONE step of :class:`negd.rules.Neuroevolution` on R realizations from the
same point and compare sample means with the theory within 4 standard errors of the sample
(fixed seeds, so the outcome is reproducible; a wrong formula misses by many SE).
"""

from __future__ import annotations

import math

import pytest
import torch

from negd import theory
from negd.rules import Neuroevolution
from negd.validation import NegdError

SIGMA = 0.1
N_SE = 4.0  # tolerance in standard errors


class LinearLoss:
    """U(x) = g.x for params [R, N] -> [R] (float64)."""

    def __init__(self, g: torch.Tensor) -> None:
        self.g = g

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return params @ self.g


class QuadraticLoss:
    """U(x) = (k/2)|x|^2: gradient k x, Hessian k I (tr H = k N)."""

    def __init__(self, k: float) -> None:
        self.k = k

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.k * (params * params).sum(dim=1)


def _unit_vector(n: int, seed: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm()


def _one_step(loss_fn, x0: torch.Tensor, sigma: float, beta: float, realizations: int, seed: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Displacements [R, N] and acceptances [R] of one neuroevolution step from x0."""
    rule = Neuroevolution(sigma=sigma, beta=beta)
    state = rule.init(x0, loss_fn, seed=seed, realizations=realizations)
    new = rule.step(state, loss_fn)
    return new.params - state.params, new.accepted


def _assert_close(measured: float, predicted: float, se: float, what: str, rel: float = 0.0) -> None:
    tol = max(N_SE * se, rel * abs(predicted))
    assert abs(measured - predicted) <= tol, (
        f"{what}: measured {measured:.6g} vs predicted {predicted:.6g} (SE {se:.3g}, tol {tol:.3g})")


def _realizations(n: int) -> int:
    # One step costs ~0.4 us per random normal (plus a per-realization cost): 4000 realizations at N=1000.
    return 20_000 if n <= 10 else 4_000


# --------------------------------------------------------------------------------------------
# Linear loss, exact for any z.

@pytest.mark.parametrize("n", [1, 10, 1000])
@pytest.mark.parametrize("z", [0.01, 1.0, 10.0, math.inf])
def test_linear_one_step_matches_theory(n: int, z: float) -> None:
    g = 2.0 * _unit_vector(n, seed=n)  # |g| = 2
    beta = math.inf if math.isinf(z) else z / (SIGMA * 2.0)
    r = _realizations(n)
    d, acc = _one_step(LinearLoss(g), torch.zeros(n, dtype=torch.float64), SIGMA, beta, r, seed=11)

    # Acceptance rate: binomial SE of the sample.
    p = acc.double().mean().item()
    _assert_close(p, theory.linear_acceptance(z), math.sqrt(p * (1 - p) / r), "acceptance")

    # Mean displacement projected on g.
    predicted = theory.linear_mean_displacement(g, SIGMA, beta)
    unit = g / g.norm()
    proj = d @ unit
    _assert_close(proj.mean().item(), (predicted @ unit).item(), proj.std().item() / math.sqrt(r),
                  "mean displacement along g")

    # Per-coordinate means: sum of squared z-scores ~ chi^2_N (mean N, sd sqrt(2N)).
    if n > 1:
        scores = (d.mean(0) - predicted) / (d.std(0) / math.sqrt(r))
        chi2 = (scores**2).sum().item()
        assert abs(chi2 - n) <= N_SE * math.sqrt(2 * n), f"per-coordinate means: chi2 {chi2:.1f}, N {n}"

    # Second moments: |d|^2 = sigma^2 ((N-1) A + M2) and the variance along g.
    sq = (d * d).sum(1)
    a, m2 = theory.linear_acceptance(z), theory.linear_second_moment(z)
    _assert_close(sq.mean().item(), SIGMA**2 * ((n - 1) * a + m2), sq.std().item() / math.sqrt(r),
                  "mean squared displacement")
    cov = theory.linear_displacement_covariance(g, SIGMA, beta)
    var_along = (unit @ cov @ unit).item()
    centred = (proj - (predicted @ unit)) ** 2
    _assert_close(centred.mean().item(), var_along, centred.std().item() / math.sqrt(r),
                  "variance along g")


def test_beta_inf_per_coordinate_variance_is_half_sigma_squared() -> None:
    n, r = 1000, 4000
    g = _unit_vector(n, seed=3)
    d, _ = _one_step(LinearLoss(g), torch.zeros(n, dtype=torch.float64), SIGMA, math.inf, r, seed=5)
    per_coordinate = d.var(0)  # [N]
    # Theory: sigma^2 (1/2 - g_i^2/(2 pi |g|^2)); averaged over coordinates sigma^2 (1/2 - 1/(2 pi N)).
    cov = theory.linear_displacement_covariance(g, SIGMA)
    assert torch.allclose(cov.diagonal(), torch.full((n,), SIGMA**2 / 2, dtype=torch.float64),
                          rtol=0, atol=SIGMA**2 / (2 * math.pi) * g.abs().max().item() ** 2 + 1e-15)
    # Each realization contributes |d|^2/N; its SE comes from the spread over realizations.
    per_row = (d - d.mean(0)).pow(2).mean(1)
    _assert_close(per_coordinate.mean().item(), cov.diagonal().mean().item(),
                  per_row.std().item() / math.sqrt(r), "mean per-coordinate variance")


# --------------------------------------------------------------------------------------------
# Isotropic quadratic loss: curvature-corrected forms.

@pytest.mark.parametrize("c", [0.3, 1.0, 2.0])
@pytest.mark.parametrize("z", [1.0, math.inf])
def test_quadratic_one_step_matches_curvature_forms(c: float, z: float) -> None:
    n, k, sigma, r = 1000, 1.0, 0.01, 5000
    grad_norm = sigma * k * n / (2 * c)  # c = sigma tr H/(2|g|), tr H = k N
    unit = _unit_vector(n, seed=7)
    x0 = unit * grad_norm / k
    beta = math.inf if math.isinf(z) else z / (sigma * grad_norm)
    d, acc = _one_step(QuadraticLoss(k), x0, sigma, beta, r, seed=13)
    assert theory.c_parameter(grad_norm, k * n, sigma) == pytest.approx(c)

    p = acc.double().mean().item()
    _assert_close(p, theory.curvature_acceptance(c, z), math.sqrt(p * (1 - p) / r), "acceptance", rel=0.02)
    if math.isinf(z):
        assert theory.curvature_acceptance(c) == pytest.approx(theory.normal_cdf(-c))

    proj = d @ unit
    predicted = theory.curvature_mean_displacement(k * x0, k * n, sigma, beta) @ unit
    _assert_close(proj.mean().item(), predicted.item(), proj.std().item() / math.sqrt(r),
                  "mean displacement along g", rel=0.02)


# --------------------------------------------------------------------------------------------
# Pure math: limits, integration, types, bad input.

def test_linear_limits() -> None:
    assert theory.linear_acceptance(0.0) == pytest.approx(1.0, abs=1e-15)
    assert theory.linear_acceptance(1e-9) == pytest.approx(1.0, abs=1e-8)
    assert theory.linear_drift_factor(1e-9) == pytest.approx(1.0, abs=1e-8)
    assert theory.linear_acceptance(1e9) == pytest.approx(0.5, abs=1e-8)
    assert theory.linear_acceptance(math.inf) == 0.5
    # z -> inf: drift -> -(sigma/sqrt(2 pi)) g/|g|, i.e. erfcx(z/sqrt 2) ~ sqrt(2/pi)/z.
    assert 1e6 * theory.linear_drift_factor(1e6) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-9)
    assert theory.linear_normalized_drift_factor(1e6) == pytest.approx(1.0, rel=1e-9)
    assert theory.linear_normalized_drift_factor(math.inf) == 1.0
    assert theory.linear_second_moment(0.0) == pytest.approx(1.0)
    assert theory.linear_second_moment(1e6) == pytest.approx(0.5, abs=1e-9)

    g = torch.tensor([3.0, -4.0], dtype=torch.float64)
    small = theory.linear_mean_displacement(g, 1e-6, beta=1.0)  # z = 5e-6
    assert torch.allclose(small, -(1.0 * 1e-12 / 2) * g, rtol=1e-5)
    inf = theory.linear_mean_displacement(g, 0.2, beta=math.inf)
    assert torch.allclose(inf, -(0.2 / math.sqrt(2 * math.pi)) * g / 5.0)
    big = theory.linear_mean_displacement(g, 0.2, beta=1e9)
    assert torch.allclose(big, inf, rtol=1e-6)


def test_curvature_limits_and_reduction() -> None:
    assert theory.curvature_acceptance(0.3) == pytest.approx(0.3820885778, abs=1e-9)  # Phi(-0.3)
    for z in (0.01, 1.0, 10.0):
        assert theory.curvature_acceptance(0.0, z) == pytest.approx(theory.linear_acceptance(z))
        assert theory.curvature_drift_factor(0.0, z) == pytest.approx(theory.linear_drift_factor(z))
    for c in (-0.5, 0.3, 2.0):
        assert theory.curvature_acceptance(c, 1e8) == pytest.approx(theory.curvature_acceptance(c))
        assert theory.curvature_normalized_drift_factor(c, 1e8) == pytest.approx(math.exp(-c * c / 2))
        assert theory.twin_drift_factor(c, math.inf, math.inf) == pytest.approx(math.exp(-c * c / 2))
    # No overflow when z < c (erfcx of a large negative argument): there
    # A = Phi(-c) + exp(z (z/2 - c)) erfc((z - c)/sqrt 2)/2 with erfc -> 2.
    assert theory.curvature_acceptance(40.0, 0.01) == pytest.approx(math.exp(0.01 * (0.005 - 40.0)))
    assert theory.curvature_acceptance(40.0, 1.0) == pytest.approx(math.exp(0.5 - 40.0))


def test_closed_forms_match_numerical_integration() -> None:
    integrate = pytest.importorskip("scipy.integrate")

    def expect(f, z: float, c: float) -> float:
        def weight(e: float) -> float:
            return math.exp(-e * e / 2 + min(0.0, -z * (e + c))) / math.sqrt(2 * math.pi) * f(e)
        return integrate.quad(weight, -math.inf, -c)[0] + integrate.quad(weight, -c, math.inf)[0]

    for z in (0.01, 0.5, 3.0, 30.0):
        for c in (-0.5, 0.0, 0.3, 2.0):
            assert expect(lambda e: 1.0, z, c) == pytest.approx(theory.curvature_acceptance(c, z), abs=1e-8)
            mean = -z * theory.curvature_drift_factor(c, z) / 2
            assert expect(lambda e: e, z, c) == pytest.approx(mean, abs=1e-8)
        m2 = expect(lambda e: e * e, z, 0.0)
        assert m2 == pytest.approx(theory.linear_second_moment(z), abs=1e-8)


def test_types_twin_rates_and_bad_input() -> None:
    assert isinstance(theory.linear_acceptance(1.0), float)
    zs = torch.tensor([0.0, 1.0, math.inf])
    out = theory.linear_acceptance(zs)
    assert isinstance(out, torch.Tensor) and out.shape == (3,)
    expected_inf = (0.1 / math.sqrt(2 * math.pi), 0.1 / math.sqrt(2))
    assert theory.twin_rates(0.1, math.inf) == pytest.approx(expected_inf)
    assert theory.twin_rates(0.1, 10.0) == pytest.approx((0.05, 0.1))
    assert theory.z_parameter(2.0, 0.1, 10.0) == pytest.approx(2.0)
    # Per-parameter sigma equal to a scalar gives the scalar result.
    g = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    same = theory.linear_mean_displacement(g, torch.full((3,), 0.1, dtype=torch.float64), beta=5.0)
    assert torch.allclose(same, theory.linear_mean_displacement(g, 0.1, beta=5.0))
    with pytest.raises(NegdError, match="z:"):
        theory.linear_acceptance(-1.0)
    with pytest.raises(NegdError, match="c:"):
        theory.curvature_acceptance(math.nan)
    with pytest.raises(NegdError, match="beta:"):
        theory.linear_mean_displacement(g, 0.1, beta=0.0)
    with pytest.raises(NegdError, match="sigma:"):
        theory.linear_mean_displacement(g, -0.1, beta=1.0)
    with pytest.raises(NegdError, match="g:"):
        theory.linear_displacement_covariance(torch.ones(2, 2, 2), 0.1)
