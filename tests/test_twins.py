"""negd.twins: the gradient twin of a neuroevolution rule, and that the ensemble mean follows it.

Whitelam et al. 2021: for small sigma the mean of an ensemble of neuroevolution trajectories
follows the noiseless twin (gradient descent with alpha = beta sigma^2/2 at finite beta,
normalized gradient descent with alpha = sigma/sqrt(2 pi) at beta = inf). We measure
Delta = mean_i (x_GD,i - <x_NE,i>)^2 - mean_i Var(x_NE,i)/R, the squared gap between the twin
and the ensemble mean with its statistical floor removed (so it estimates the systematic gap
alone), at a fixed twin "time" alpha * steps, and check that it shrinks with sigma.
"""

from __future__ import annotations

import math

import pytest
import torch

from negd import MLPLoss, MLPSpec, Neuroevolution, advance, gradient_twin, matched_twin, paper_init
from negd.rules import GradientDescent, Langevin, NormalizedGradientDescent
from negd.theory import twin_rates
from negd.validation import NegdError


@pytest.mark.parametrize("sigma", [0.1, 1e-3])
def test_twin_rates(sigma):
    alpha, s = twin_rates(sigma, 7.0)
    assert alpha == pytest.approx(7.0 * sigma**2 / 2) and s == pytest.approx(sigma)
    alpha, s = twin_rates(sigma, math.inf)
    assert alpha == pytest.approx(sigma / math.sqrt(2 * math.pi))
    assert s == pytest.approx(sigma / math.sqrt(2))


def test_gradient_twin_types_and_rates():
    twin = gradient_twin(Neuroevolution(0.1, 4.0))
    assert isinstance(twin, Langevin) and twin.alpha == pytest.approx(0.02) and twin.noise == 0.1
    twin = gradient_twin(Neuroevolution(0.1, 4.0), noise=False)
    assert type(twin) is GradientDescent and twin.alpha == pytest.approx(0.02)
    twin = gradient_twin(Neuroevolution(0.1))
    assert isinstance(twin, NormalizedGradientDescent)
    assert twin.alpha == pytest.approx(0.1 / math.sqrt(2 * math.pi))
    assert twin.noise == pytest.approx(0.1 / math.sqrt(2))
    assert gradient_twin(Neuroevolution(0.1), noise=False).noise == 0.0


def test_gradient_twin_with_per_parameter_sigma():
    sigma = torch.tensor([0.1, 0.2, 0.4])
    twin = gradient_twin(Neuroevolution(sigma))
    assert isinstance(twin, NormalizedGradientDescent) and torch.equal(twin.weights, sigma)
    assert torch.allclose(torch.as_tensor(twin.noise), sigma / math.sqrt(2))
    # The drift of the weighted twin is sigma_i^2 g_i / (sqrt(2 pi) |sigma g|).
    grad = torch.tensor([[1.0, -2.0, 0.5]])
    expected = sigma**2 * grad / (math.sqrt(2 * math.pi) * torch.linalg.vector_norm(sigma * grad))
    assert torch.allclose(twin.alpha * twin.direction(grad), expected)
    finite = gradient_twin(Neuroevolution(sigma, 3.0), noise=False)
    assert torch.allclose(torch.as_tensor(finite.alpha), 3.0 * sigma**2 / 2)


SPEC = MLPSpec(depth=1, width=8)
REALIZATIONS = 100
TWIN_TIME = 2.0  # alpha * steps, the same for every sigma
GROUPS = 10  # jackknife groups of realizations for the standard error of Delta


@pytest.fixture(scope="module")
def problem() -> tuple[MLPLoss, torch.Tensor]:
    x = torch.linspace(-1, 1, 100)[:, None]
    return MLPLoss(SPEC, x, torch.sin(torch.pi * x)), paper_init(SPEC.n_params, 0.5, seed=3)


def gap(params: torch.Tensor, twin: torch.Tensor) -> float:
    """Delta of the module docstring for an ensemble [R, N] and the twin's parameters [N]."""
    mean, var = params.mean(0), params.var(0)
    return ((twin - mean) ** 2).mean().item() - var.mean().item() / params.shape[0]


def measure_gap(problem, sigma: float, beta: float) -> tuple[float, float, float]:
    """(Delta, jackknife standard error of Delta, mean squared displacement of the twin)."""
    loss_fn, start = problem
    rule = Neuroevolution(sigma, beta)
    twin_rule = gradient_twin(rule, noise=False)
    steps = round(TWIN_TIME / twin_rule.alpha)
    ne = advance(rule, rule.init(start, loss_fn, seed=1, realizations=REALIZATIONS), loss_fn, steps)
    gd = advance(twin_rule, twin_rule.init(start, loss_fn, realizations=1), loss_fn, steps)
    params, twin = ne.params.double(), gd.params[0].double()
    groups = params.chunk(GROUPS)
    leave_one_out = [gap(torch.cat(groups[:k] + groups[k + 1:]), twin) for k in range(GROUPS)]
    centre = sum(leave_one_out) / GROUPS
    se = math.sqrt((GROUPS - 1) / GROUPS * sum((d - centre) ** 2 for d in leave_one_out))
    displacement = ((twin - start.double()) ** 2).mean().item()
    return gap(params, twin), se, displacement


@pytest.mark.parametrize("beta, sigmas", [(math.inf, (0.08, 0.02)), (50.0, (0.04, 0.02))])
def test_ensemble_mean_tracks_twin_and_gap_shrinks_with_sigma(problem, beta, sigmas, single_thread):
    (big, big_se, _), (small, small_se, displacement) = (measure_gap(problem, s, beta) for s in sigmas)
    # The systematic gap shrinks with sigma by more than three combined standard errors ...
    assert big - small > 3 * math.hypot(big_se, small_se)
    # ... and at the smaller sigma it is a small fraction of how far the twin moved.
    assert small + 3 * small_se < 0.25 * displacement


# -- the moment-matched twin -------------------------------------------------------------------

def _linear_loss(g: torch.Tensor):
    return lambda p: p @ g  # U(x) = g . x: exactly linear, so the theory is exact for one step


@pytest.mark.parametrize("z", [0.3, 1.0, 3.0])
def test_matched_twin_has_neuroevolutions_one_step_moments(z):
    """One step from x = 0 on a linear loss, R = 40,000 realizations, N = 8: the mean displacement
    along g and the per-coordinate variance across g of the matched twin and of neuroevolution
    agree within 4 combined standard errors; the plain Langevin twin's drift does not (z >= 1)."""
    n, r, sigma = 8, 40_000, 0.1
    g = torch.zeros(n, dtype=torch.float64)
    g[0] = 1.0
    beta = z / (sigma * float(g.norm()))
    loss = _linear_loss(g)
    x0 = torch.zeros(n, dtype=torch.float64)
    ne = Neuroevolution(sigma, beta)
    dx_ne = ne.step(ne.init(x0, loss, realizations=r, seed=3), loss).params
    twin = matched_twin(ne)
    dx_tw = twin.step(twin.init(x0, loss, realizations=r, seed=4), loss).params

    def stats(dx):
        along, across = dx[:, 0], dx[:, 1:]
        return float(along.mean()), float(along.std()) / math.sqrt(r), float(across.var(dim=0).mean())

    m_ne, se_ne, v_ne = stats(dx_ne)
    m_tw, se_tw, v_tw = stats(dx_tw)
    assert abs(m_ne - m_tw) < 4 * math.hypot(se_ne, se_tw)
    # Across-g variance: each coordinate's sample variance has relative SE sqrt(2/(R-1))
    var_se = math.sqrt(2 / (r - 1)) * float(v_ne) / math.sqrt(n - 1)
    assert abs(v_ne - v_tw) < 4 * math.sqrt(2) * var_se
    if z >= 1.0:
        langevin_drift = -(beta * sigma**2 / 2) * float(g[0])
        assert abs(m_ne - langevin_drift) > 10 * se_ne


def test_matched_twin_limits_are_the_usual_twins():
    """beta = inf: the normalized twin (same drift, noise sigma/sqrt 2); z -> 0: Langevin."""
    spec = MLPSpec(depth=1, width=5)
    x = torch.linspace(-1, 1, 20)[:, None]
    loss = MLPLoss(spec, x, torch.sin(3 * x))
    start = paper_init(spec.n_params, 0.5, seed=2, realizations=4)
    for ne, usual in ((Neuroevolution(0.01), gradient_twin(Neuroevolution(0.01))),
                      (Neuroevolution(0.01, 1e-3), gradient_twin(Neuroevolution(0.01, 1e-3)))):
        a = advance(matched_twin(ne), matched_twin(ne).init(start, loss, seed=1), loss, 5)
        b = advance(usual, usual.init(start, loss, seed=1), loss, 5)
        torch.testing.assert_close(a.params, b.params, rtol=0, atol=1e-6)


def test_matched_twin_time_step_scales_drift_and_noise():
    ne = Neuroevolution(0.05, 20.0)
    g = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    drift, acceptance = matched_twin(ne).drift_and_spread(g)
    z = 20.0 * 0.05 * 5.0
    tail = math.exp(z**2 / 2) * math.erfc(z / math.sqrt(2))
    torch.testing.assert_close(drift, -(20.0 * 0.05**2 / 2) * tail * g)
    assert float(acceptance) == pytest.approx(0.5 + tail / 2)
    with pytest.raises(NegdError, match="sigma"):
        matched_twin(Neuroevolution(torch.tensor([0.1, 0.2])))
