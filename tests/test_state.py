"""negd.state.State: to_dict/from_dict round-trips every rule's state exactly, extras included (an
AdaptiveMC state must keep its adaptation: mu, sigma, rejection counts), through torch.save/load, and
the restored state continues bit for bit as the original."""

from __future__ import annotations

import io

import pytest
import torch

from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import RULES
from negd.state import State
from tests.test_rules import HYPERPARAMETERS

SPEC = MLPSpec(depth=1, width=6)
R = 5
# Rules whose state carries extras (a rule that adds some must be listed, and is then checked).
WITH_EXTRAS = {"adaptive_mc", "adaptive_mc_twin", "curvature_twin", "gradient_descent", "langevin",
               "normalized", "matched_langevin"}


@pytest.fixture(scope="module")
def loss_fn() -> MLPLoss:
    x = torch.linspace(-1, 1, 25)[:, None]
    return MLPLoss(SPEC, x, torch.sin(torch.pi * x))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
            and torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8)))


def _assert_same_state(a: State, b: State) -> None:
    assert a.step == b.step and a.seed == b.seed
    for name in ("params", "loss", "realization", "accepted", "tied"):
        assert _same(getattr(a, name), getattr(b, name)), name
    assert sorted(a.extras) == sorted(b.extras)
    for key in a.extras:
        assert _same(a.extras[key], b.extras[key]), key


def _saved_and_loaded(state: State) -> State:
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    buffer.seek(0)
    return State.from_dict(torch.load(buffer, weights_only=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rules_state_round_trips_and_continues_exactly(name, dtype, loss_fn):
    rule = RULES[name](**HYPERPARAMETERS[name])
    state = rule.init(paper_init(SPEC.n_params, 0.5, seed=1, realizations=R).to(dtype), loss_fn, seed=3)
    for _ in range(4):
        state = rule.step(state, loss_fn)
    assert bool(state.extras) == (name in WITH_EXTRAS)
    loaded = _saved_and_loaded(state)
    _assert_same_state(loaded, state)
    a, b = state, loaded
    for _ in range(3):
        a, b = rule.step(a, loss_fn), rule.step(b, loss_fn)
    _assert_same_state(a, b)


def test_adaptive_mc_keeps_its_adaptation(loss_fn):
    """The example of issue 19: a saved AdaptiveMC state whose sigma has shrunk and whose mean has
    moved; without its extras it would restart from the initial sigma and mu = 0."""
    rule = RULES["adaptive_mc"](sigma=0.5, epsilon=0.5, n_reset=1, shrink=0.5)
    state = rule.init(paper_init(SPEC.n_params, 0.5, seed=1, realizations=R), loss_fn, seed=3)
    fresh = state
    for _ in range(6):
        state = rule.step(state, loss_fn)
    assert not torch.equal(state.extras["amc_sigma"], fresh.extras["amc_sigma"])
    assert bool((state.extras["amc_mu"] != 0).any())
    loaded = _saved_and_loaded(state)
    assert torch.equal(loaded.extras["amc_sigma"], state.extras["amc_sigma"])
    assert torch.equal(loaded.extras["amc_mu"], state.extras["amc_mu"])


def test_chunk_concat_and_to_keep_extras(loss_fn):
    rule = RULES["adaptive_mc"](**HYPERPARAMETERS["adaptive_mc"])
    state = rule.step(rule.init(paper_init(SPEC.n_params, 0.5, seed=1, realizations=R), loss_fn), loss_fn)
    _assert_same_state(State.concat([state.chunk(0, 2), state.chunk(2, R)]), state)
    _assert_same_state(state.to("cpu"), state)
