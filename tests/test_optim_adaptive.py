"""negd.optim.AdaptiveMC: equality with the ensemble rule (R = 1), exact resumption."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from negd.losses.models import flat_params, load_flat_params
from negd.optim import AdaptiveMC
from negd.rules import AdaptiveMC as AdaptiveMCRule
from negd.validation import NegdError


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))


def closure_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    return lambda: ((model(x) - y) ** 2).mean()


def run(opt: AdaptiveMC, closure, steps: int) -> list[float]:
    return [float(opt.step(closure)) for _ in range(steps)]


@pytest.mark.parametrize("beta", [math.inf, 300.0])
def test_equals_rule_with_one_realization(small_regression, beta):
    """Same flat parameters, seed and loss -> same trajectory, shrinks included (n_reset = 4)."""
    x, y = small_regression
    model = make_model()
    shadow = copy.deepcopy(model)
    opt = AdaptiveMC(model.parameters(), sigma=0.05, epsilon=0.3, n_reset=4, beta=beta, seed=5)
    rule = AdaptiveMCRule(sigma=0.05, epsilon=0.3, n_reset=4, beta=beta)

    def loss_fn(params: torch.Tensor) -> torch.Tensor:
        load_flat_params(shadow, params[0])
        return ((shadow(x) - y) ** 2).mean().reshape(1)

    state = rule.init(flat_params(model)[None], loss_fn, seed=5)
    closure = closure_for(model, x, y)
    for _ in range(200):
        loss = opt.step(closure)
        state = rule.step(state, loss_fn)
        assert float(loss) == float(state.loss[0])
    assert torch.equal(flat_params(model), state.params[0])
    mu = torch.cat([opt.state[p]["mu"].reshape(-1) for p in model.parameters()])
    assert torch.equal(mu, state.extras["amc_mu"][0])
    assert opt.param_groups[0]["sigma"] == state.extras["amc_sigma"][0].item() < 0.05  # it shrank
    assert 0 < opt.accepted < 200


def test_state_dict_round_trip_continues_bit_exactly(small_regression):
    x, y = small_regression
    model = make_model()
    opt = AdaptiveMC(model.parameters(), sigma=0.05, epsilon=0.3, n_reset=5, seed=11)
    run(opt, closure_for(model, x, y), 60)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer)
    twin = make_model(seed=99)
    twin.load_state_dict(ckpt["model"])
    twin_opt = AdaptiveMC(twin.parameters(), sigma=1.0, epsilon=1.0, n_reset=50, seed=0)  # overwritten
    twin_opt.load_state_dict(ckpt["optim"])
    assert (twin_opt.epsilon, twin_opt.n_reset, twin_opt.rejections) == (0.3, 5, opt.rejections)
    a = run(opt, closure_for(model, x, y), 80)
    b = run(twin_opt, closure_for(twin, x, y), 80)
    assert a == b and torch.equal(flat_params(model), flat_params(twin))
    assert opt.param_groups[0]["sigma"] == twin_opt.param_groups[0]["sigma"] < 0.05


def test_loss_decreases(small_regression):
    x, y = small_regression
    model = make_model()
    closure = closure_for(model, x, y)
    with torch.no_grad():
        start = float(closure())
    losses = run(AdaptiveMC(model.parameters(), sigma=0.02), closure, 300)
    assert losses[-1] < 0.7 * start and all(b <= a for a, b in zip(losses, losses[1:]))


def test_rejects_a_neuroevolution_state_dict(small_regression):
    from negd.optim import Neuroevolution

    sd = Neuroevolution(make_model().parameters(), sigma=0.1).state_dict()
    with pytest.raises(NegdError, match="state_dict"):
        AdaptiveMC(make_model().parameters(), sigma=0.1).load_state_dict(sd)


@pytest.mark.parametrize("kwargs, name", [({"epsilon": -0.1}, "epsilon"), ({"epsilon": 2.0}, "epsilon"),
                                          ({"n_reset": 0}, "n_reset"), ({"shrink": 1.5}, "shrink"),
                                          ({"sigma": -1.0}, "sigma"), ({"seed": -1}, "seed")])
def test_bad_arguments_raise_negd_error_naming_them(kwargs, name):
    with pytest.raises(NegdError, match=name):
        AdaptiveMC(make_model().parameters(), **{"sigma": 0.1, **kwargs})
