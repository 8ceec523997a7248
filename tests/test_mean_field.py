"""The mean-field twin (expected NE step, no gradient) and the smoothed-objective (ES) twin."""

from __future__ import annotations

import math

import pytest
import torch

import negd
from negd.losses.base import value_and_grad
from negd.losses.models import MLPSpec, paper_init
from negd.tasks import get_task
from negd.twins import MomentMatchedLangevin
from negd.twins.mean_field import MeanFieldTwin, SmoothedGradientTwin, acceptance_probability
from negd.validation import NegdError


@pytest.fixture(scope="module")
def shallow():
    """The paper's shallow net (1-30-1 tanh, no output bias, sin 2 pi t, paper init), float64."""
    task = get_task("sin2pi")
    spec = MLPSpec(depth=1, width=30, output_bias=False)
    loss = negd.MLPLoss(spec, task.inputs.double(), task.targets.double())
    return loss, paper_init(spec.n_params, 1e-2, seed=0, realizations=2).double()


def test_mean_field_drift_equals_the_moment_matched_drift_within_4_se(shallow):
    loss, params = shallow
    sigma = 1e-4  # the linear regime of the quick shallow preset (c << 0.1)
    twin = MeanFieldTwin(sigma, proposals=4096)
    state = twin.init(params, loss, seed=1)
    units, _ = twin.step_samples(state, loss)
    drift = units.mean(dim=1)
    se = units.std(dim=1) / math.sqrt(units.shape[1])
    matched = MomentMatchedLangevin(sigma)
    want, _ = matched.drift_and_spread(matched.init(params, loss, seed=1).extras["grad"])
    z = (drift - want) / se
    assert z.abs().max() < 4, z.abs().max()
    # the z-scores are standard normal: mean square 1 +- 4 SE (sqrt(2 / 120))
    assert abs(float((z**2).mean()) - 1) < 4 * math.sqrt(2 / z.numel())
    _, grad = value_and_grad(loss, params)
    unit = grad / grad.norm(dim=1, keepdim=True)
    along = (units * unit[:, None, :]).sum(dim=2)  # [R, J]: the component along grad U
    se_along = along.std(dim=1) / math.sqrt(along.shape[1])
    assert ((along.mean(dim=1) - (want * unit).sum(dim=1)).abs() < 4 * se_along).all()
    assert (se_along < 0.02 * sigma / math.sqrt(2 * math.pi)).all()  # a test that resolves 2%


def test_mean_field_twin_is_a_deterministic_rule_that_descends(shallow):
    loss, params = shallow
    twin = MeanFieldTwin(1e-3, proposals=64, time_step=50.0)
    a = negd.advance(twin, twin.init(params, loss, seed=3), loss, 5)
    b = negd.advance(twin, twin.init(params, loss, seed=3), loss, 5)
    c = negd.advance(twin, twin.init(params, loss, seed=4), loss, 5)
    assert torch.equal(a.params, b.params) and not torch.equal(a.params, c.params)
    assert (a.loss < loss(params)).all()
    chunked = MeanFieldTwin(1e-3, proposals=64, time_step=50.0, chunk=7)
    d = negd.advance(chunked, chunked.init(params, loss, seed=3), loss, 5)
    torch.testing.assert_close(d.params, a.params, rtol=1e-12, atol=1e-15)


def test_bad_hyperparameters_get_one_line():
    with pytest.raises(NegdError, match="^proposals: antithetic"):
        MeanFieldTwin(0.1, proposals=5)
    with pytest.raises(NegdError, match="^sigma:"):
        MeanFieldTwin(-0.1)
    with pytest.raises(NegdError, match="^sigma:"):
        SmoothedGradientTwin(torch.ones(3))


def test_acceptance_probability_rejects_non_finite_proposals():
    new = torch.tensor([[0.5, math.nan, math.inf, 2.0]], dtype=torch.float64)
    p = acceptance_probability(new, torch.tensor([1.0], dtype=torch.float64), 2.0)
    assert p.tolist() == [[1.0, 0.0, 0.0, math.exp(-2.0)]]
    assert acceptance_probability(new, torch.tensor([math.nan]), math.inf).tolist() == [[1.0, 0.0, 0.0, 1.0]]


def _abs_loss(params: torch.Tensor) -> torch.Tensor:
    return params.to(torch.float64).abs().sum(dim=1)


def _quadrature_drift(a: float, sigma: float, beta: float) -> float:
    """NE's exact mean step on U = |x| at x = a sigma: sigma int xi phi(xi) p(|a + xi| - |a|) dxi."""
    xi = torch.linspace(-12, 12, 480001, dtype=torch.float64)
    d_u = sigma * ((a + xi).abs() - abs(a))
    p = (d_u <= 0).double() if math.isinf(beta) else torch.exp(-beta * d_u.clamp(min=0))
    f = xi * torch.exp(-xi**2 / 2) / math.sqrt(2 * math.pi) * p
    return sigma * float(torch.trapezoid(f, xi))


A = [-1.5, -0.5, 0.25, 0.5, 1.0, 3.0]  # x / sigma on both sides of the kink


def test_mean_field_twin_is_neuroevolutions_mean_step_on_a_kink():
    """Against NE itself (one step of 40000 realizations at each x) and the quadrature, beta = inf."""
    sigma = 0.1
    x = torch.tensor(A, dtype=torch.float64)[:, None] * sigma
    twin = MeanFieldTwin(sigma, proposals=20000)
    units, _ = twin.step_samples(twin.init(x, _abs_loss, seed=5), _abs_loss)
    drift, se = units.mean(dim=1)[:, 0], units.std(dim=1)[:, 0] / math.sqrt(units.shape[1])
    exact = torch.tensor([_quadrature_drift(a, sigma, math.inf) for a in A], dtype=torch.float64)
    assert ((drift - exact).abs() < 4 * se).all(), ((drift - exact) / se).tolist()
    # closed form at beta = inf: -(sigma/sqrt(2 pi)) sign(a) (1 - exp(-2 a^2))
    a = torch.tensor(A, dtype=torch.float64)
    closed = -(sigma / math.sqrt(2 * math.pi)) * a.sign() * (1 - torch.exp(-2 * a**2))
    torch.testing.assert_close(exact, closed, rtol=1e-3, atol=1e-6)  # quadrature of a step function
    r = 40000
    rule = negd.Neuroevolution(sigma)
    for i, a_i in enumerate(A):
        start = torch.full((r, 1), a_i * sigma, dtype=torch.float64)
        moved = rule.step(rule.init(start, _abs_loss, seed=6), _abs_loss).params[:, 0] - start[:, 0]
        se_ne = moved.std() / math.sqrt(r)
        gap = float(moved.mean() - drift[i])
        assert abs(gap) < 4 * math.hypot(se_ne, se[i]), (a_i, gap)


def test_smoothed_gradient_twin_departs_from_neuroevolution_at_the_kink():
    """Small beta sigma: NE's drift at x is -(beta sigma^2/2) erf(sqrt 2 x/sigma), the smoothed
    gradient's is -(beta sigma^2/2) erf(x/(sqrt 2 sigma)): NE at x moves as the ES twin does at 2x."""
    sigma, beta = 0.1, 0.1  # beta sigma = 0.01: the Langevin (small z) regime
    x = torch.tensor(A, dtype=torch.float64)[:, None] * sigma
    a = torch.tensor(A, dtype=torch.float64)
    rate = beta * sigma**2 / 2
    es = SmoothedGradientTwin(sigma, beta, proposals=40000)
    grad, se_grad = es.smoothed_gradient(es.init(x, _abs_loss, seed=7), _abs_loss)
    assert ((grad[:, 0] - torch.erf(a / math.sqrt(2))).abs() < 4 * se_grad[:, 0]).all()
    es_drift, es_se = es.drift(grad)[:, 0], rate * se_grad[:, 0]

    twin = MeanFieldTwin(sigma, beta, proposals=40000)
    ne_drift, ne_se, _ = twin.expected_step(twin.init(x, _abs_loss, seed=8), _abs_loss)
    ne_drift, ne_se = ne_drift[:, 0], ne_se[:, 0]
    exact = torch.tensor([_quadrature_drift(v, sigma, beta) for v in A], dtype=torch.float64)
    assert ((ne_drift - exact).abs() < 4 * ne_se).all()
    # the 2x law, to the O(beta sigma) accuracy of the small-z expansion
    torch.testing.assert_close(exact, -rate * torch.erf(math.sqrt(2) * a), rtol=0.03, atol=0)
    # NE and the ES twin agree far from the kink (|x| = 3 sigma: within 1.5%) ...
    far = a.abs() >= 3
    assert ((ne_drift - es_drift).abs()[far] < 0.015 * rate + 4 * torch.hypot(ne_se, es_se)[far]).all()
    # ... and near it NE moves faster by a factor erf(sqrt 2 a)/erf(a/sqrt 2): 1.78 at |a| = 1/2
    near = a.abs() <= 0.5
    ratio = ne_drift[near] / es_drift[near]
    want = torch.erf(math.sqrt(2) * a[near]) / torch.erf(a[near] / math.sqrt(2))
    assert ((ratio - want).abs() < 0.1).all() and (ratio > 1.7).all(), ratio.tolist()
    assert ((ne_drift - es_drift).abs()[near] > 10 * torch.hypot(ne_se, es_se)[near]).all()
