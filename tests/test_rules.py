"""negd.rules: every rule in RULES through the same checks, then rule-specific properties."""

from __future__ import annotations

import math

import pytest
import torch

from negd import rng
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import (
    RULES,
    GradientDescent,
    Langevin,
    Neuroevolution,
    NormalizedGradientDescent,
    metropolis_accept,
    value_and_grad,
)
from negd.state import State
from negd.validation import NegdError

# Reasonable hyperparameters for each registered rule (a new rule must be added here).
HYPERPARAMETERS = {
    "neuroevolution": {"sigma": 0.05},
    "gradient_descent": {"alpha": 0.05},
    "langevin": {"alpha": 0.05, "noise": 0.01},
    "normalized": {"alpha": 0.01, "noise": 0.005},
    "matched_langevin": {"sigma": 0.01, "beta": 50.0},
    "population": {"sigma": 0.05, "k": 3},
    "adaptive_mc": {"sigma": 0.05, "epsilon": 0.2, "n_reset": 3},
    "minibatch_neuroevolution": {"sigma": 0.05, "mode": "stale"},
    "minibatch_gradient": {"base": Langevin(alpha=0.05, noise=0.01)},
    "curvature_twin": {"sigma": 0.05, "n_probes": 3, "refresh": 2},
    "adaptive_mc_twin": {"sigma": 0.01, "epsilon": 0.2},
    "mean_field_twin": {"sigma": 0.05, "proposals": 8},
    "smoothed_twin": {"sigma": 0.05, "proposals": 8},
}
SPEC = MLPSpec(depth=1, width=6)
R = 7


def make_rule(name: str, **overrides):
    return RULES[name](**{**HYPERPARAMETERS[name], **overrides})


@pytest.fixture(scope="module")
def loss_fn() -> MLPLoss:
    x = torch.linspace(-1, 1, 25)[:, None]
    return MLPLoss(SPEC, x, torch.sin(torch.pi * x))


@pytest.fixture(scope="module")
def start() -> torch.Tensor:
    return paper_init(SPEC.n_params, 0.5, seed=1, realizations=R)


def run(rule, params, loss_fn, steps, **init_kw):
    state = rule.init(params, loss_fn, **init_kw)
    for _ in range(steps):
        state = rule.step(state, loss_fn)
    return state


def test_every_rule_has_test_hyperparameters():
    assert set(RULES) == set(HYPERPARAMETERS)


@pytest.mark.parametrize("name", sorted(RULES))
def test_shapes_and_counters(name, loss_fn, start):
    rule = make_rule(name)
    state = rule.init(start, loss_fn, seed=3)
    assert state.step == 0 and not bool(state.accepted.any())
    state = rule.step(state, loss_fn)
    assert state.params.shape == (R, SPEC.n_params) and state.loss.shape == (R,)
    assert state.realization.dtype == torch.int64 and torch.equal(state.realization, torch.arange(R))
    assert state.accepted.shape == (R,) and state.accepted.dtype == torch.bool
    assert state.step == 1 and state.seed == 3
    # A shared start [N] is broadcast to R realizations.
    shared = rule.init(start[0], loss_fn, realizations=4)
    assert shared.params.shape == (4, SPEC.n_params) and torch.equal(shared.params[3], start[0])


@pytest.mark.parametrize("name", sorted(RULES))
def test_same_seed_same_numbers(name, loss_fn, start):
    rule = make_rule(name)
    a = run(rule, start, loss_fn, 5, seed=9)
    b = run(rule, start, loss_fn, 5, seed=9)
    assert torch.equal(a.params, b.params) and torch.equal(a.loss, b.loss)
    assert torch.equal(a.accepted, b.accepted)
    if name not in ("gradient_descent", "curvature_twin", "adaptive_mc_twin"):  # deterministic
        c = run(rule, start, loss_fn, 5, seed=10)
        assert not torch.equal(a.params, c.params)


@pytest.mark.parametrize("name", sorted(RULES))
def test_chunked_ensemble_equals_whole(name, loss_fn, start):
    rule = make_rule(name)
    whole = rule.init(start, loss_fn, seed=4)
    parts = [whole.chunk(0, 3), whole.chunk(3, 4), whole.chunk(4, R)]
    for _ in range(4):
        whole = rule.step(whole, loss_fn)
        parts = [rule.step(p, loss_fn) for p in parts]
    joined = type(whole).concat(parts)
    assert torch.equal(joined.params, whole.params)
    assert torch.equal(joined.loss, whole.loss)
    assert torch.equal(joined.accepted, whole.accepted)
    assert torch.equal(joined.realization, whole.realization)


@pytest.mark.parametrize("name", sorted(RULES))
def test_state_loss_is_loss_of_state_params(name, loss_fn, start):
    state = run(make_rule(name), start, loss_fn, 6, seed=2)
    assert torch.allclose(state.loss, loss_fn(state.params), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", sorted(RULES))
def test_bad_params_raise_negd_error(name, loss_fn, start):
    rule = make_rule(name)
    cases = [
        (torch.zeros(R, SPEC.n_params + 1), {}, "params"),  # wrong N for this loss
        (torch.zeros(0, SPEC.n_params), {}, "params"),  # R < 1
        (torch.zeros(SPEC.n_params), {"realizations": 0}, "realizations"),
        (torch.zeros(2, 3, SPEC.n_params), {}, "params"),
        (torch.zeros(R, SPEC.n_params, dtype=torch.int64), {}, "params"),
        (torch.full((R, SPEC.n_params), math.nan), {}, "params"),
        ([0.0] * SPEC.n_params, {}, "params"),
        (start, {"realizations": R + 1}, "realizations"),
        (start, {"seed": -1}, "seed"),
        (start, {"realization": torch.arange(R + 2)}, "realization"),
    ]
    for params, kw, field in cases:
        with pytest.raises(NegdError, match=field):
            rule.init(params, loss_fn, **kw)


def test_loss_fn_with_wrong_output_shape_raises(start):
    with pytest.raises(NegdError, match="loss_fn"):
        Neuroevolution(0.1).init(start, lambda p: p.sum())


BAD_HYPERPARAMETERS = [
    ("neuroevolution", {"sigma": 0.0}, "sigma"),
    ("neuroevolution", {"sigma": -0.1}, "sigma"),
    ("neuroevolution", {"sigma": math.nan}, "sigma"),
    ("neuroevolution", {"sigma": math.inf}, "sigma"),
    ("neuroevolution", {"sigma": torch.tensor([0.1, -0.1])}, "sigma"),
    ("neuroevolution", {"sigma": torch.ones(2, 2)}, "sigma"),
    ("neuroevolution", {"beta": -1.0}, "beta"),
    ("neuroevolution", {"beta": 0.0}, "beta"),
    ("neuroevolution", {"beta": math.nan}, "beta"),
    ("gradient_descent", {"alpha": 0.0}, "alpha"),
    ("gradient_descent", {"alpha": math.nan}, "alpha"),
    ("gradient_descent", {"noise": -1.0}, "noise"),
    ("langevin", {"noise": 0.0}, "noise"),
    ("langevin", {"alpha": -1.0}, "alpha"),
    ("normalized", {"alpha": math.inf}, "alpha"),
    ("normalized", {"noise": math.nan}, "noise"),
    ("matched_langevin", {"sigma": -0.1}, "sigma"),
    ("matched_langevin", {"sigma": torch.tensor([0.1, 0.1])}, "sigma"),
    ("matched_langevin", {"beta": 0.0}, "beta"),
    ("matched_langevin", {"time_step": 0.0}, "time_step"),
    ("population", {"k": 0}, "k"),
    ("population", {"selection": "best"}, "selection"),
    ("population", {"sigma": -0.1}, "sigma"),
    ("population", {"beta": 0.0}, "beta"),
    ("adaptive_mc", {"epsilon": -0.1}, "epsilon"),
    ("adaptive_mc", {"epsilon": 1.5}, "epsilon"),
    ("adaptive_mc", {"n_reset": 0}, "n_reset"),
    ("adaptive_mc", {"shrink": 1.0}, "shrink"),
    ("adaptive_mc", {"sigma": torch.tensor([0.1, 0.2])}, "sigma"),
    ("minibatch_neuroevolution", {"mode": "hot"}, "mode"),
    ("minibatch_neuroevolution", {"sigma": 0.0}, "sigma"),
    ("minibatch_neuroevolution", {"beta": 0.0}, "beta"),
    ("minibatch_gradient", {"base": Neuroevolution(0.1)}, "base"),
    ("curvature_twin", {"sigma": torch.tensor([0.1, 0.1])}, "sigma"),
    ("curvature_twin", {"n_probes": 1}, "n_probes"),
    ("curvature_twin", {"refresh": 0}, "refresh"),
    ("curvature_twin", {"curvature": "full"}, "curvature"),
    ("curvature_twin", {"time_step": -1.0}, "time_step"),
    ("adaptive_mc_twin", {"epsilon": -0.1}, "epsilon"),
    ("adaptive_mc_twin", {"sigma": -1.0}, "sigma"),
]


@pytest.mark.parametrize("name, kwargs, field", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_raise_negd_error(name, kwargs, field):
    with pytest.raises(NegdError, match=field):
        make_rule(name, **kwargs)


@pytest.mark.parametrize("name, field", [("neuroevolution", "sigma"), ("gradient_descent", "alpha"),
                                         ("langevin", "noise"), ("population", "sigma")])
def test_per_parameter_hyperparameter_of_wrong_length(name, field, loss_fn, start):
    rule = make_rule(name, **{field: torch.full((SPEC.n_params + 1,), 0.01)})
    with pytest.raises(NegdError, match=field):
        rule.init(start, loss_fn)


# -- neuroevolution ----------------------------------------------------------------------------

def test_beta_inf_accepts_moves_of_equal_loss():
    start = torch.zeros(5, 3)
    state = run(Neuroevolution(0.1), start, lambda p: torch.zeros(p.shape[0]), 1)
    assert bool(state.accepted.all()) and not torch.equal(state.params, start)


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_nan_loss_is_never_accepted(beta):
    # The loss is NaN whenever the first coordinate is positive; starting at -0.3 with
    # sigma = 0.5 about a quarter of the proposals are NaN. None may be accepted.
    def loss_fn(p):
        return torch.where(p[:, 0] > 0, torch.nan, (p ** 2).sum(1))

    rule = Neuroevolution(0.5, beta)
    state = rule.init(torch.full((200, 2), -0.3), loss_fn, seed=1)
    moved = torch.zeros(200, dtype=torch.bool)
    for _ in range(5):
        state = rule.step(state, loss_fn)
        assert bool((state.params[:, 0] <= 0).all()) and bool(torch.isfinite(state.loss).all())
        moved |= state.accepted
    assert bool(moved.any())


def test_non_finite_current_loss_is_left_for_any_finite_one():
    new = torch.tensor([1.0, 5.0, math.nan, math.inf])
    old = torch.tensor([math.nan, math.inf, math.nan, 0.0])
    assert metropolis_accept(new, old, math.inf, None).tolist() == [True, True, False, False]
    assert metropolis_accept(new, old, 2.0, torch.zeros(4, dtype=torch.float64)).tolist() == [
        True, True, False, False]


@pytest.mark.parametrize("beta, d_u", [(1.0, 0.5), (10.0, 0.3), (100.0, 0.001), (1.0, -0.2)])
def test_finite_beta_acceptance_frequency_matches_metropolis(beta, d_u):
    # Every proposal raises the loss by exactly d_u: the loss is 0 at init and d_u afterwards.
    calls = {"n": 0}

    def loss_fn(p):
        value = 0.0 if calls["n"] == 0 else d_u
        calls["n"] += 1
        return torch.full((p.shape[0],), value, dtype=torch.float64)

    r = 40_000
    rule = Neuroevolution(0.1, beta)
    state = rule.step(rule.init(torch.zeros(r, 1), loss_fn, seed=5), loss_fn)
    p = min(1.0, math.exp(-beta * d_u))
    freq = state.accepted.double().mean().item()
    # Binomial standard error sqrt(p(1-p)/R), four of them (exact when p = 1).
    assert abs(freq - p) <= 4 * math.sqrt(p * (1 - p) / r)


def test_per_parameter_sigma_scales_each_coordinate():
    sigma = torch.tensor([1e-3, 1e-1, 1.0])
    r = 20_000
    rule = Neuroevolution(sigma)
    state = rule.step(rule.init(torch.zeros(r, 3), lambda p: torch.zeros(p.shape[0]), seed=8),
                      lambda p: torch.zeros(p.shape[0]))
    # The move is exactly sigma_i * xi_i with the documented random numbers ...
    xi = rng.normal(8, torch.arange(r), 0, 3)
    assert torch.equal(state.params, xi * sigma)
    # ... and its standard deviation is sigma_i (standard error sigma/sqrt(2R), four of them).
    std = state.params.std(dim=0)
    assert bool(((std - sigma).abs() < 4 * sigma / math.sqrt(2 * r)).all())


# -- gradient rules ----------------------------------------------------------------------------

def test_gradient_descent_step_is_minus_alpha_grad(loss_fn, start):
    rule = GradientDescent(alpha=0.05)
    state = rule.step(rule.init(start, loss_fn), loss_fn)
    _, grad = value_and_grad(loss_fn, start)
    assert torch.allclose(state.params, start - 0.05 * grad, rtol=0, atol=1e-7)


def test_normalized_gradient_descent_moves_by_alpha(loss_fn, start):
    rule = NormalizedGradientDescent(alpha=0.01)
    state = rule.step(rule.init(start, loss_fn), loss_fn)
    step = torch.linalg.vector_norm(state.params - start, dim=1)
    assert torch.allclose(step, torch.full((R,), 0.01), rtol=1e-4)


def test_normalized_gradient_descent_without_gradient_does_not_move():
    rule = NormalizedGradientDescent(alpha=0.01)
    flat = lambda p: (p * 0).sum(1)  # noqa: E731
    state = rule.step(rule.init(torch.ones(3, 4), flat), flat)
    assert torch.equal(state.params, torch.ones(3, 4))


def test_langevin_noise_uses_its_own_stream():
    flat = lambda p: (p * 0).sum(1)  # noqa: E731
    rule = Langevin(alpha=0.1, noise=0.2)
    state = rule.step(rule.init(torch.zeros(4, 5), flat, seed=6), flat)
    xi = rng.normal(6, torch.arange(4), 0, 5, stream=rng.STREAM_LANGEVIN)
    assert torch.equal(state.params, 0.2 * xi)


def test_half_precision_params_are_refused_by_the_rules():
    """Issue 11, defect 8: bf16 parameters at sigma = 1e-3 'accepted' every move while nothing moved;
    the rules take float32 or float64 parameters only (issue 7: a one-line error naming the dtype)."""
    from negd.rules import Neuroevolution as NE

    with pytest.raises(NegdError, match=r"^params: dtype must be float32 or float64, got torch.bfloat16"):
        NE(sigma=1e-3).init(torch.ones(8, dtype=torch.bfloat16), lambda p: (p.float() ** 2).sum(1),
                            realizations=2)


def test_proposals_that_change_nothing_are_not_accepted():
    """Issue 11, defect 8: moves with sigma = 1e-30 changed nothing and were counted as accepted."""
    from negd.rules import Neuroevolution as NE

    rule, loss = NE(sigma=1e-30), lambda p: (p ** 2).sum(1)
    state = rule.init(torch.ones(5), loss, realizations=3)
    for _ in range(4):
        state = rule.step(state, loss)
        assert not state.accepted.any()
    assert torch.equal(state.params, torch.ones(3, 5))
    moving = NE(sigma=0.1).step(NE(sigma=0.1).init(torch.ones(5), loss, realizations=64), loss)
    assert 0 < int(moving.accepted.sum()) < 64  # ordinary moves: accepted about half the time


def test_state_to_moves_every_tensor_and_keeps_the_rest():
    state = State(torch.randn(2, 3), torch.rand(2, dtype=torch.float64), 4, 7, torch.tensor([5, 6]),
                  torch.tensor([True, False]), {"grad": torch.randn(2, 3)}, torch.tensor([False, True]))
    moved = state.to(torch.device("meta"))  # a device other than the source, available everywhere
    for key in ("params", "loss", "realization", "accepted", "tied"):
        assert getattr(moved, key).device.type == "meta"
        assert getattr(moved, key).dtype == getattr(state, key).dtype
    assert moved.extras["grad"].device.type == "meta" and (moved.step, moved.seed) == (4, 7)
    back = state.to("cpu")
    assert torch.equal(back.params, state.params) and torch.equal(back.extras["grad"], state.extras["grad"])
