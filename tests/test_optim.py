"""negd.optim.Neuroevolution: the torch.optim protocol, exact resumption, equality with the rule."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from torch import nn

from negd import optim, rules
from negd.losses.models import flat_params, load_flat_params
from negd.validation import NegdError


def make_model(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1))


def closure_for(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    return lambda: ((model(x) - y) ** 2).mean()


def run(opt: optim.Neuroevolution, closure, steps: int) -> list[float]:
    return [float(opt.step(closure)) for _ in range(steps)]


def test_loss_decreases_and_step_returns_kept_loss(small_regression):
    x, y = small_regression
    model = make_model()
    closure = closure_for(model, x, y)
    with torch.no_grad():
        start = float(closure())
    opt = optim.Neuroevolution(model.parameters(), sigma=0.02)
    losses = run(opt, closure, 300)
    assert losses[-1] < 0.7 * start
    # beta = inf: the kept loss never goes up, and it is the loss of the model's parameters.
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    with torch.no_grad():
        assert float(closure()) == losses[-1]
    assert opt.steps == 300 and 0 < opt.accepted < 300
    assert opt.acceptance_rate == opt.accepted / 300


def test_same_seed_same_numbers_different_seed_different(small_regression):
    x, y = small_regression
    results = []
    for seed in (3, 3, 4):
        model = make_model()
        opt = optim.Neuroevolution(model.parameters(), sigma=0.02, seed=seed)
        run(opt, closure_for(model, x, y), 50)
        results.append(flat_params(model))
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


@pytest.mark.parametrize("beta", [math.inf, 200.0])
def test_state_dict_round_trip_continues_bit_exactly(small_regression, beta):
    x, y = small_regression
    model = make_model()
    opt = optim.Neuroevolution(model.parameters(), sigma=0.02, beta=beta, seed=11)
    run(opt, closure_for(model, x, y), 40)

    # Save through torch.save like a checkpoint, restore into a fresh model and optimizer.
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buffer)
    buffer.seek(0)
    ckpt = torch.load(buffer)
    twin = make_model(seed=99)
    twin.load_state_dict(ckpt["model"])
    twin_opt = optim.Neuroevolution(twin.parameters(), sigma=1.0, beta=1.0, seed=0)  # all overwritten
    twin_opt.load_state_dict(ckpt["optim"])
    assert twin_opt.steps == 40 and twin_opt.accepted == opt.accepted

    a = run(opt, closure_for(model, x, y), 60)
    b = run(twin_opt, closure_for(twin, x, y), 60)
    assert a == b
    assert torch.equal(flat_params(model), flat_params(twin))
    assert opt.accepted == twin_opt.accepted


def test_state_dict_is_a_copy(small_regression):
    x, y = small_regression
    model = make_model()
    opt = optim.Neuroevolution(model.parameters(), sigma=0.02)
    run(opt, closure_for(model, x, y), 5)
    sd = opt.state_dict()
    run(opt, closure_for(model, x, y), 5)
    assert sd["state"]["negd"]["step"] == 5
    other = optim.Neuroevolution(make_model().parameters(), sigma=0.02)
    other.load_state_dict(sd)
    run(other, lambda: torch.tensor(0.0), 1)
    assert sd["state"]["negd"]["step"] == 5 and other.steps == 6


def test_load_state_dict_rejects_foreign_dict():
    model = make_model()
    opt = optim.Neuroevolution(model.parameters(), sigma=0.02)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NegdError, match="state_dict"):
        opt.load_state_dict(sgd.state_dict())


def test_param_group_changes_take_effect(small_regression):
    x, y = small_regression
    model = make_model()
    opt = optim.Neuroevolution([{"params": model[0].parameters()},
                          {"params": model[2].parameters(), "sigma": 1e-3}],
                         sigma=0.02)
    assert [g["sigma"] for g in opt.param_groups] == [0.02, 1e-3]
    # Scheduler-like change: a tiny sigma for the first group and a large one for the second;
    # the proposal seen by the closure shows which group moved.
    before = flat_params(model)
    for g, s in zip(opt.param_groups, (1e-6, 1.0)):
        g["sigma"] = s
    seen = []
    proposals = lambda: seen.append(flat_params(model)) or ((model(x) - y) ** 2).mean()  # noqa: E731
    opt.step(proposals)
    delta = seen[-1] - before
    n_first = sum(p.numel() for p in model[0].parameters())
    assert delta[:n_first].abs().max() < 1e-5
    assert delta[n_first:].abs().max() > 1e-2
    # An invalid value set through param_groups is caught at the next step.
    opt.param_groups[0]["sigma"] = -1.0
    with pytest.raises(NegdError, match="sigma"):
        opt.step(proposals)
    opt.param_groups[0]["sigma"] = 0.1
    opt.param_groups[0]["beta"] = 5.0
    with pytest.raises(NegdError, match="beta"):
        opt.step(proposals)


@pytest.mark.parametrize("beta", [math.inf, 300.0])
def test_equals_rule_with_one_realization(small_regression, beta):
    """Same flat parameters, seed and loss computation -> same trajectory as optim.Neuroevolution (R=1)."""
    x, y = small_regression
    model = make_model()
    shadow = copy.deepcopy(model)
    opt = optim.Neuroevolution([{"params": model[0].parameters(), "sigma": 0.03},
                          {"params": model[2].parameters()}], sigma=0.01, beta=beta, seed=5)
    n_first = sum(p.numel() for p in model[0].parameters())
    n = sum(p.numel() for p in model.parameters())
    sigma = torch.full((n,), 0.01)
    sigma[:n_first] = 0.03
    rule = rules.Neuroevolution(sigma=sigma, beta=beta)

    def loss_fn(params: torch.Tensor) -> torch.Tensor:
        load_flat_params(shadow, params[0])
        return ((shadow(x) - y) ** 2).mean().reshape(1)

    state = rule.init(flat_params(model)[None], loss_fn, seed=5)
    closure = closure_for(model, x, y)
    accepted = []
    for _ in range(150):
        loss = opt.step(closure)
        state = rule.step(state, loss_fn)
        accepted.append(bool(state.accepted[0]))
        assert float(loss) == float(state.loss[0])
    assert torch.equal(flat_params(model), state.params[0])
    assert 0 < sum(accepted) < 150 and sum(accepted) == opt.accepted


def test_never_accepts_non_finite_loss():
    p = nn.Parameter(torch.zeros(3))
    opt = optim.Neuroevolution([p], sigma=0.1, beta=1.0)
    calls = iter([torch.tensor(1.0)] + [torch.tensor(v) for v in (math.nan, math.inf, -math.inf)] * 5)
    for _ in range(15):
        assert float(opt.step(lambda: next(calls))) == 1.0
    assert opt.accepted == 0 and torch.equal(p.detach(), torch.zeros(3))


def test_reevaluate_calls_closure_before_each_mutation():
    p = nn.Parameter(torch.zeros(2))
    counts = {"lazy": 0, "eager": 0}

    def make_closure(key):
        def closure():
            counts[key] += 1
            return (p ** 2).sum()
        return closure

    lazy = optim.Neuroevolution([p], sigma=0.1)
    for _ in range(10):
        lazy.step(make_closure("lazy"))
    eager = optim.Neuroevolution([nn.Parameter(torch.zeros(1))], sigma=0.1, reevaluate=True)
    q = eager.param_groups[0]["params"][0]
    for _ in range(10):
        eager.step(lambda: (counts.__setitem__("eager", counts["eager"] + 1), (q ** 2).sum())[1])
    assert counts == {"lazy": 11, "eager": 20}


def test_minibatch_loss_with_reevaluate_compares_on_the_same_batch():
    # The loss of a "batch" k is |p|^2 + k: it changes between steps for fixed parameters.
    # With reevaluate both sides of dU see the same batch, so about half of the proposals
    # (those that shrink |p|) are accepted; a carried loss from the previous batch is 1 lower
    # and makes every later proposal look worse.
    def accepted(reevaluate: bool) -> int:
        p = nn.Parameter(torch.full((1,), 0.5))
        batch = {"k": 0.0}
        opt = optim.Neuroevolution([p], sigma=1e-3, reevaluate=reevaluate)
        for k in range(40):
            batch["k"] = float(k)
            opt.step(lambda: (p ** 2).sum() + batch["k"])
        return opt.accepted

    assert accepted(reevaluate=False) <= 1
    assert accepted(reevaluate=True) >= 10


@pytest.mark.parametrize("kwargs, name", [
    ({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"sigma": math.nan}, "sigma"),
    ({"sigma": math.inf}, "sigma"), ({"sigma": "a"}, "sigma"),
    ({"sigma": torch.ones(3)}, "sigma"),
    ({"sigma": 0.1, "beta": 0.0}, "beta"), ({"sigma": 0.1, "beta": -2.0}, "beta"),
    ({"sigma": 0.1, "beta": math.nan}, "beta"),
    ({"sigma": 0.1, "seed": -1}, "seed"), ({"sigma": 0.1, "seed": 1.5}, "seed"),
    ({"sigma": 0.1, "reevaluate": 1}, "reevaluate"),
])
def test_bad_arguments_raise_negd_error_naming_them(kwargs, name):
    with pytest.raises(NegdError, match=name):
        optim.Neuroevolution(make_model().parameters(), **kwargs)


def test_bad_group_and_closure_errors():
    model = make_model()
    with pytest.raises(NegdError, match="sigma"):
        optim.Neuroevolution([{"params": model[0].parameters(), "sigma": -0.1}], sigma=0.1)
    with pytest.raises(NegdError, match="beta"):
        optim.Neuroevolution([{"params": model[0].parameters(), "beta": 2.0},
                        {"params": model[2].parameters()}], sigma=0.1).step(lambda: 0.0)
    opt = optim.Neuroevolution(model.parameters(), sigma=0.1)
    with pytest.raises(NegdError, match="closure"):
        opt.step()
    with pytest.raises(NegdError, match="closure"):
        opt.step(lambda: torch.ones(3))
    with pytest.raises(NegdError, match="params"):
        optim.Neuroevolution([torch.zeros(3, dtype=torch.int64)], sigma=0.1)


@pytest.mark.parametrize("error", [RuntimeError("closure failed"), KeyboardInterrupt()])
def test_closure_raising_after_the_mutation_restores_the_parameters(error):
    """Issue 11, defect 5: an exception (Ctrl-C included) in the closure after the mutation left the
    unvetted mutation in the model and a stale stored loss."""
    model = make_model()
    x = torch.linspace(-1, 1, 20)[:, None]
    closure = closure_for(model, x, torch.sin(x))
    opt = optim.Neuroevolution(model.parameters(), sigma=0.1, seed=3)
    run(opt, closure, 5)
    before, loss, steps = flat_params(model).clone(), float(opt.loss), opt.steps

    def failing():
        raise error

    with pytest.raises(type(error)):
        opt.step(failing)
    assert torch.equal(flat_params(model), before)
    assert float(opt.loss) == loss == float(closure().detach()) and opt.steps == steps
    # and it continues exactly as if the failed call had not happened
    twin = make_model()
    load_flat_params(twin, before)
    twin_opt = optim.Neuroevolution(twin.parameters(), sigma=0.1, seed=3)
    twin_opt.load_state_dict(opt.state_dict())
    assert run(opt, closure, 5) == run(twin_opt, closure_for(twin, x, torch.sin(x)), 5)


@pytest.mark.parametrize("value", [2, True, torch.tensor(2), torch.tensor([1], dtype=torch.int32)])
def test_integer_losses_are_refused(value):
    """Issue 11, defect 5: an integer loss was truncated (2 compared where 2.61 was meant)."""
    opt = optim.Neuroevolution([nn.Parameter(torch.zeros(2))], sigma=0.1)
    with pytest.raises(NegdError, match="closure: must return a floating-point loss"):
        opt.step(lambda: value)


def test_moves_that_change_nothing_are_not_accepted():
    """Issue 11, defect 8: with sigma = 1e-30 every move changed nothing and counted as accepted."""
    p = nn.Parameter(torch.ones(4))
    opt = optim.Neuroevolution([p], sigma=1e-30)
    with pytest.warns(RuntimeWarning, match="changed no parameter"):
        for _ in range(10):
            opt.step(lambda: (p ** 2).sum())
    assert opt.accepted == 0 and opt.unchanged_steps == 10 and opt.steps == 10


def test_bfloat16_parameters_that_cannot_resolve_sigma_warn():
    """Issue 11, defect 8: bf16 parameters at sigma = 1e-3 'accepted' everything while nothing moved."""
    with pytest.warns(RuntimeWarning, match="are bfloat16 .* round away"):
        optim.Neuroevolution([nn.Parameter(torch.ones(8, dtype=torch.bfloat16))], sigma=1e-3)
