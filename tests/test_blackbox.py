"""Black-box objectives (issue 15): any callable params [R, N] -> losses [R] runs through every
neuroevolution rule, negd.advance and the optimizers, and no gradient is ever asked for."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import negd
from negd.envs import ControlLoss
from negd.losses.models import MLPSpec, flat_params
from negd.validation import NegdError

SIGMA = 0.05


class NoGradient:
    """A piecewise-constant bowl, sum floor(10 x)^2 / 100: flat almost everywhere, so no gradient
    exists; it fails the test if called where autograd could record it. ``nan_above``: rows whose
    first parameter exceeds it get a NaN loss (a simulator that breaks)."""

    def __init__(self, nan_above: float = math.inf) -> None:
        self.nan_above, self.calls = nan_above, 0

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled() and not params.requires_grad, "a gradient was asked for"
        self.calls += 1
        loss = (torch.floor(10 * params.to(torch.float64)) ** 2).sum(dim=1) / 100
        return torch.where(params[:, 0] > self.nan_above, torch.nan, loss)


RULES = {
    "neuroevolution": negd.Neuroevolution(sigma=SIGMA),
    "neuroevolution_beta": negd.Neuroevolution(sigma=SIGMA, beta=200.0),
    "population_elitist": negd.Population(sigma=SIGMA, k=4, selection="elitist"),
    "population_comma": negd.Population(sigma=SIGMA, k=4, selection="comma"),
    "adaptive_mc": negd.AdaptiveMC(sigma=SIGMA, n_reset=20),
    "minibatch_paired": negd.MinibatchNeuroevolution(sigma=SIGMA, mode="paired"),
    "minibatch_stale": negd.MinibatchNeuroevolution(sigma=SIGMA, mode="stale"),
}


def _start(r: int = 6, n: int = 5) -> torch.Tensor:
    return torch.full((r, n), 0.55, dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_descends_a_loss_without_gradient(name):
    rule, loss = RULES[name], NoGradient()
    state = rule.init(_start(), loss, seed=3)
    start = state.loss.clone()
    state = negd.advance(rule, state, loss, 300)
    assert loss.calls > 1 and state.step == 300
    assert torch.isfinite(state.loss).all()
    with torch.no_grad():
        torch.testing.assert_close(state.loss, loss(state.params), rtol=0, atol=0)
    assert (state.loss < start).all(), f"{name}: {state.loss.tolist()} not below {start.tolist()}"


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_nan_loss_is_never_accepted(name):
    rule, loss = RULES[name], NoGradient(nan_above=0.56)  # the start is 0.55: half the moves break
    state = rule.init(_start(), loss, seed=4)
    for _ in range(40):
        state = rule.step(state, loss)
        assert torch.isfinite(state.loss).all() and (state.params[:, 0] <= 0.56).all()


@pytest.mark.parametrize("name", sorted(RULES))
@pytest.mark.parametrize("bad", [lambda p: torch.zeros(p.shape[0], 1, dtype=torch.float64),
                                 lambda p: torch.zeros(p.shape[0] + 1, dtype=torch.float64),
                                 lambda p: torch.zeros(p.shape[0], dtype=torch.int64),
                                 lambda p: 0.5])
def test_a_loss_of_the_wrong_shape_gets_one_line(name, bad):
    with pytest.raises(NegdError, match=r"^loss_fn: must") as err:
        RULES[name].init(_start(), bad, seed=0)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_trains_a_control_loss(name):
    """CartPole with a greedy policy (piecewise constant in the parameters) through every rule:
    the fixed-episode loss for the plain rules, the step's episodes for the minibatch ones."""
    spec = MLPSpec(depth=1, width=4, in_features=4, out_features=2)
    loss = ControlLoss("CartPole-v1", spec, episodes=2, seed=0)
    params = torch.zeros(2, spec.n_params, dtype=torch.float64)
    rule = RULES[name]
    state = negd.advance(rule, rule.init(params, loss, seed=5), loss, 3)
    assert state.step == 3 and torch.isfinite(state.loss).all()
    assert (state.loss <= -1).all() and (state.loss >= -500).all()


@pytest.mark.parametrize("optimizer", ["neuroevolution", "adaptive_mc"])
def test_optimizers_train_a_policy_module_on_a_black_box_closure(optimizer):
    spec = MLPSpec(depth=1, width=4, in_features=4, out_features=2)
    loss = ControlLoss("CartPole-v1", spec, episodes=3, seed=0)
    torch.manual_seed(0)
    model: nn.Module = spec.module().double()
    cls = negd.optim.Neuroevolution if optimizer == "neuroevolution" else negd.optim.AdaptiveMC
    opt = cls(model.parameters(), sigma=0.3, seed=2)

    def closure() -> torch.Tensor:
        assert not torch.is_grad_enabled()
        return loss(flat_params(model)[None])[0]

    first = float(opt.step(closure))
    for _ in range(30):
        last = float(opt.step(closure))
    assert last <= first  # the fixed episodes: a deterministic objective, never worse
    with torch.no_grad():
        assert last == float(loss(flat_params(model)[None])[0])  # the loss of the model's parameters


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_counts_exact_ties(name):
    """On the staircase, moves of sigma = 0.05 from 0.55 often stay on a step: dU == 0 exactly."""
    rule, loss = RULES[name], NoGradient()
    state, tally = negd.engine.advance_tallied(rule, rule.init(_start(), loss, seed=3), loss, 50)
    assert (tally.ties > 0).all() and (tally.ties <= 50).all()
