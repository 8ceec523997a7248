"""negd.rules.AdaptiveMC (aMC of Whitelam et al. 2022): mean update, shrink-and-reset, NE at step 0."""

from __future__ import annotations

import math

import pytest
import torch

from negd import rng
from negd.rules import AdaptiveMC, Neuroevolution
from negd.validation import NegdError


def quadratic(p: torch.Tensor) -> torch.Tensor:
    return (p * p).sum(1)


def test_first_step_is_neuroevolution():
    start = torch.full((6, 4), 0.5)
    a, b = AdaptiveMC(0.2), Neuroevolution(0.2)
    sa = a.step(a.init(start, quadratic, seed=2), quadratic)
    sb = b.step(b.init(start, quadratic, seed=2), quadratic)
    assert torch.equal(sa.params, sb.params) and torch.equal(sa.accepted, sb.accepted)


def test_mean_follows_accepted_moves():
    rule = AdaptiveMC(0.1, epsilon=0.25)
    state = rule.init(torch.full((200, 3), 1.0), quadratic, seed=4)
    for _ in range(3):
        before = state
        state = rule.step(state, quadratic)
        mu = before.extras["amc_mu"]
        xi = rng.normal(4, torch.arange(200), before.step, 3)
        d = mu + 0.1 * xi
        expected = torch.where(state.accepted[:, None], mu + 0.25 * (d - mu), mu)
        assert torch.allclose(state.extras["amc_mu"], expected, atol=1e-7)
        moved = torch.where(state.accepted[:, None], before.params + d, before.params)
        assert torch.allclose(state.params, moved, atol=1e-7)
    assert 0 < int(state.accepted.sum()) < 200


def test_consecutive_rejections_shrink_sigma_and_reset_mean():
    rule = AdaptiveMC(0.1, epsilon=0.5, n_reset=3, shrink=0.9)
    state = rule.init(torch.full((5, 2), 1.0), quadratic, seed=1)
    state = state.replace(extras={**state.extras, "amc_mu": torch.full((5, 2), 0.01)})
    never = lambda p: torch.full((p.shape[0],), math.nan)  # noqa: E731  every proposal is refused
    sigmas, counts = [], []
    for _ in range(7):
        state = rule.step(state, never)
        sigmas.append(state.extras["amc_sigma"][0].item())
        counts.append(int(state.extras["amc_rejections"][0]))
        assert not bool(state.accepted.any())
    assert counts == [1, 2, 0, 1, 2, 0, 1]
    assert sigmas == [0.1, 0.1, 0.1 * 0.9, 0.1 * 0.9, 0.1 * 0.9, 0.1 * 0.9 * 0.9, 0.1 * 0.9 * 0.9]
    assert torch.equal(state.extras["amc_mu"], torch.zeros(5, 2))
    assert torch.equal(state.params, torch.full((5, 2), 1.0))


def test_acceptance_resets_the_rejection_count():
    rule = AdaptiveMC(0.1, n_reset=2)
    state = rule.init(torch.zeros(3, 2), quadratic, seed=0)
    state = state.replace(extras={**state.extras, "amc_rejections": torch.ones(3, dtype=torch.int64)})
    flat = lambda p: torch.zeros(p.shape[0])  # noqa: E731  every move is accepted at beta = inf
    state = rule.step(state, flat)
    assert bool(state.accepted.all()) and int(state.extras["amc_rejections"].sum()) == 0
    assert bool((state.extras["amc_sigma"] == 0.1).all())


@pytest.mark.parametrize("kwargs, field", [({"epsilon": -0.1}, "epsilon"), ({"epsilon": 1.01}, "epsilon"),
                                           ({"epsilon": math.nan}, "epsilon"), ({"n_reset": 0}, "n_reset"),
                                           ({"n_reset": 2.5}, "n_reset"), ({"shrink": 0.0}, "shrink"),
                                           ({"shrink": 1.0}, "shrink"), ({"sigma": 0.0}, "sigma"),
                                           ({"beta": -1.0}, "beta")])
def test_bad_hyperparameters(kwargs, field):
    with pytest.raises(NegdError, match=field) as info:
        AdaptiveMC(**{"sigma": 0.1, **kwargs})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("m_along", [0.0, -0.7, 1.2])
def test_one_step_means_match_the_mean_field_twin(m_along):
    # Linear loss U = g.x in N = 10, mu = sigma (m_along u + 0.5 v), v a unit vector across g. One aMC
    # step of R realizations: mean dx and dmu per coordinate within 4 SE (chi^2 over the N
    # coordinates: mean N, SD sqrt(2N), 4 SD) of E[dx] = Phi(-m) mu - sigma phi(m) u and
    # E[dmu] = -epsilon sigma phi(m) u, m = g.mu/(sigma |g|) = m_along.
    from negd.twins.adaptive_twin import amc_mean_step

    n, r, sigma, eps = 10, 40_000, 0.1, 0.3
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    u = g / g.norm()
    v = torch.randn(n, generator=gen, dtype=torch.float64)
    v = v - (v @ u) * u
    v = v / v.norm()
    mu = sigma * (m_along * u + 0.5 * v)
    rule = AdaptiveMC(sigma, epsilon=eps)
    state = rule.init(torch.zeros(n, dtype=torch.float64), lambda p: p @ g, seed=9, realizations=r)
    state = state.replace(extras={**state.extras, "amc_mu": mu.expand(r, n).clone()})
    new = rule.step(state, lambda p: p @ g)
    dx, dmu, acc = amc_mean_step(mu[None], (mu @ g)[None], torch.zeros(1, dtype=torch.float64), g[None],
                                 sigma, eps)
    assert abs(new.accepted.double().mean().item() - acc.item()) <= 4 * math.sqrt(0.25 / r)
    for measured, predicted in ((new.params, dx[0]), (new.extras["amc_mu"] - mu, dmu[0])):
        scores = (measured.mean(0) - predicted) / (measured.std(0) / math.sqrt(r))
        assert abs((scores**2).sum().item() - n) <= 4 * math.sqrt(2 * n)
    assert abs(acc.item() - theory_cdf(-m_along)) < 1e-12


def theory_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def test_epsilon_zero_keeps_no_memory_and_is_the_paper_rule():
    """epsilon = 0 (the default of the authors' aMC code): mu stays 0, and with no shrink in sight the
    steps are exactly Neuroevolution's (same seed, same numbers)."""
    from negd.optim import AdaptiveMC as AdaptiveMCOptimizer
    from negd.rules import AdaptiveMCTwin, Neuroevolution

    rule = AdaptiveMC(0.1, epsilon=0.0, n_reset=10_000)
    state = rule.init(torch.ones(5, 2), quadratic, seed=4)
    reference = Neuroevolution(0.1).init(torch.ones(5, 2), quadratic, seed=4)
    for _ in range(30):
        state, reference = rule.step(state, quadratic), Neuroevolution(0.1).step(reference, quadratic)
    assert not bool(state.extras["amc_mu"].any())
    assert torch.equal(state.params, reference.params)
    assert AdaptiveMCTwin(0.1, epsilon=0.0).epsilon == 0.0
    assert AdaptiveMCOptimizer([torch.zeros(3, requires_grad=True)], sigma=0.1, epsilon=0.0).epsilon == 0.0
