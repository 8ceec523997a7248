"""negd.rules.Population: exactness at K = 1, one-step statistics against negd.theory.population.

Statistical checks run ONE step on R realizations from one point and compare sample means with the
closed forms within 4 standard errors of the sample (fixed seeds; a wrong form misses by many SE).
"""

from __future__ import annotations

import math

import pytest
import torch

from negd import rng
from negd.rules import Neuroevolution, Population
from negd.rules.population import child_mutations
from negd.theory.population import population_moments
from negd.validation import NegdError

SIGMA = 0.1
N_SE = 4.0


def _unit_vector(n: int, seed: int) -> torch.Tensor:
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return v / v.norm()


def _close(measured: torch.Tensor, predicted: float, what: str, rel: float = 0.0) -> None:
    """Mean of ``measured`` (one value per realization) against ``predicted``, 4 SE (or ``rel``)."""
    se = measured.std().item() / math.sqrt(measured.numel())
    tol = max(N_SE * se, rel * abs(predicted))
    got = measured.mean().item()
    assert abs(got - predicted) <= tol, f"{what}: {got:.6g} vs {predicted:.6g} (SE {se:.3g})"


def _one_step(loss_fn, x0: torch.Tensor, rule: Population, r: int, seed: int):
    state = rule.init(x0, loss_fn, seed=seed, realizations=r)
    new = rule.step(state, loss_fn)
    return new.params - state.params, new.accepted


@pytest.mark.parametrize("selection", ["comma", "elitist"])
@pytest.mark.parametrize("k", [1, 2, 4, 16])
@pytest.mark.parametrize("n", [1, 10, 1000])
def test_linear_one_step_matches_theory(n, k, selection):
    g = 3.0 * _unit_vector(n, seed=n)
    u = g / g.norm()
    r = min(20_000, 16_000_000 // (k * n))  # bounded memory: R K N float64 numbers
    d, accepted = _one_step(lambda p: p @ g, torch.zeros(n, dtype=torch.float64),
                            Population(SIGMA, k=k, selection=selection), r, seed=7 + k)
    moments = population_moments(k, selection)
    if selection == "comma":
        assert bool(accepted.all())
    else:  # binomial SE of the predicted acceptance, 4 of them
        a = moments.acceptance
        assert abs(accepted.double().mean().item() - a) <= N_SE * math.sqrt(a * (1 - a) / r)
    along = d @ u
    _close(along, -SIGMA * moments.drift, "mean displacement along g")
    _close(along**2, SIGMA**2 * moments.second_moment, "second moment along g")
    if n > 1:  # per coordinate across g: sigma^2 times the acceptance (1, or 1 - 2^-K elitist)
        across = ((d * d).sum(1) - along**2) / (n - 1)
        _close(across, SIGMA**2 * moments.acceptance, "second moment across g")


@pytest.mark.parametrize("k", [1, 2, 4, 16])
@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_quadratic_elitist_drift_is_truncated_max(c, k):
    # U = |x|^2/2 in N = 1000: tr H = N, c = sigma N/(2|g|); drift -sigma E[M_K; M_K > c] along g,
    # within 4 SE or 2% (the Gaussian curvature form neglects the spread of xi.H.xi, c sqrt(2/N)).
    n, sigma = 1000, 0.01
    r = min(8000, 16_000_000 // (k * n))
    grad_norm = sigma * n / (2 * c)
    u = _unit_vector(n, seed=3)
    d, accepted = _one_step(lambda p: 0.5 * (p * p).sum(1), u * grad_norm, Population(sigma, k=k), r,
                            seed=11)
    moments = population_moments(k, "elitist", c)
    _close(d @ u, -sigma * moments.drift, "elitist drift", rel=0.02)
    _close(accepted.double(), moments.acceptance, "acceptance", rel=0.02)


@pytest.mark.parametrize("beta", [math.inf, 20.0])
def test_k1_elitist_is_the_paper_rule(beta, small_regression):
    from negd.losses.mlp import MLPLoss
    from negd.losses.models import MLPSpec, paper_init

    spec = MLPSpec(depth=1, width=6)
    loss_fn = MLPLoss(spec, *small_regression)
    start = paper_init(spec.n_params, 0.5, seed=1, realizations=5)
    a, b = Population(0.05, k=1, beta=beta), Neuroevolution(0.05, beta)
    sa, sb = a.init(start, loss_fn, seed=3), b.init(start, loss_fn, seed=3)
    for _ in range(40):
        sa, sb = a.step(sa, loss_fn), b.step(sb, loss_fn)
        assert torch.equal(sa.accepted, sb.accepted)
    assert torch.equal(sa.params, sb.params) and torch.equal(sa.loss, sb.loss)
    assert bool(sa.accepted.any() or (sa.params != start).any())


def test_child_random_numbers_follow_the_documented_layout():
    state = Population(1.0, k=3).init(torch.zeros(4, 5), lambda p: p.sum(1), seed=2)
    got = child_mutations(state, 1.0, 3)  # N = 5: P = 8, child k uses normals 8k .. 8k + 4
    row = rng.normal(2, torch.arange(4), 0, 24)
    for child in range(3):
        assert torch.equal(got[:, child], row[:, 8 * child:8 * child + 5])
    assert torch.equal(got[:, 0], Neuroevolution(1.0).mutation(state))


def test_losses_are_one_batched_call_and_best_child_wins():
    calls = []

    def loss_fn(p):
        calls.append(p.shape)
        return (p * p).sum(1)

    rule = Population(0.3, k=5, selection="comma")
    state = rule.init(torch.ones(6, 3), loss_fn, seed=4)
    new = rule.step(state, loss_fn)
    assert calls == [(6, 3), (30, 3)]
    children = state.params[:, None] + child_mutations(state, 0.3, 5)
    best = (children**2).sum(2).min(dim=1)
    assert torch.allclose(new.loss, best.values.double()) and bool(new.accepted.all())  # losses are float64


@pytest.mark.parametrize("selection", ["comma", "elitist"])
def test_non_finite_children_are_never_taken(selection):
    # NaN whenever the first coordinate is positive; from -0.3 with sigma = 0.5 a quarter of children.
    def loss_fn(p):
        return torch.where(p[:, 0] > 0, torch.nan, (p**2).sum(1))

    rule = Population(0.5, k=3, selection=selection)
    state = rule.init(torch.full((300, 2), -0.3), loss_fn, seed=1)
    for _ in range(5):
        state = rule.step(state, loss_fn)
        assert bool((state.params[:, 0] <= 0).all()) and bool(torch.isfinite(state.loss).all())
    everything_nan = rule.step(state, lambda p: torch.full((p.shape[0],), math.nan))
    assert not bool(everything_nan.accepted.any()) and torch.equal(everything_nan.params, state.params)


@pytest.mark.parametrize("kwargs, field", [({"k": 0}, "k"), ({"k": -2}, "k"), ({"k": 1.5}, "k"),
                                           ({"selection": "plus"}, "selection"),
                                           ({"selection": "comma", "beta": 3.0}, "beta"),
                                           ({"sigma": 0.0}, "sigma")])
def test_bad_hyperparameters(kwargs, field):
    with pytest.raises(NegdError, match=field) as info:
        Population(**{"sigma": 0.1, **kwargs})
    assert "\n" not in str(info.value)
