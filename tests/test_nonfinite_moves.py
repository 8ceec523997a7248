"""A non-finite loss (NaN, +inf, -inf) is never accepted as a move: in every accept/reject rule of
RULES at beta = inf and finite beta, in the fused C kernel, and in both torch.optim optimizers."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from negd import kernels, optim
from negd.engine import fused_step_fn
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import RULES, Neuroevolution
from negd.tasks import get_task

# The rules that accept or reject proposals (the gradient twins have none).
PROPOSING = {"neuroevolution": {"sigma": 0.5}, "population": {"sigma": 0.5, "k": 3},
             "adaptive_mc": {"sigma": 0.5, "epsilon": 0.2, "n_reset": 3},
             "minibatch_neuroevolution": {"sigma": 0.5, "mode": "stale"}}


def test_every_proposing_rule_is_covered():
    """Every rule outside negd.twins (the gradient dynamics, which propose nothing) is tested here."""
    proposing = {name for name, cls in RULES.items() if not cls.__module__.startswith("negd.twins")}
    assert proposing == set(PROPOSING)


def _poisoned_loss(p):
    """NaN where x0 > 0, +inf where x1 > 0.4, -inf (better than anything) where x1 < -1; else |x|^2."""
    loss = (p.double() ** 2).sum(1)
    loss = torch.where(p[:, 1] > 0.4, math.inf, loss)
    loss = torch.where(p[:, 1] < -1.0, -math.inf, loss)
    return torch.where(p[:, 0] > 0, math.nan, loss)


@pytest.mark.parametrize("beta", [math.inf, 2.0])
@pytest.mark.parametrize("name", sorted(PROPOSING))
def test_no_rule_accepts_a_non_finite_loss(name, beta):
    rule = RULES[name](**PROPOSING[name], beta=beta)
    state = rule.init(torch.tensor([[-0.3, -0.3]]).repeat(300, 1), _poisoned_loss, seed=5)
    for _ in range(6):
        before = state
        state = rule.step(state, _poisoned_loss)
        assert bool(torch.isfinite(state.loss).all())
        assert bool(torch.isfinite(_poisoned_loss(state.params)).all())
        assert bool((state.params[:, 0] <= 0).all() and (state.params[:, 1] <= 0.4).all())
        assert bool((state.params[:, 1] >= -1.0).all())
        assert torch.equal(state.params[~state.accepted], before.params[~state.accepted])
    assert bool(state.accepted.any())  # finite moves still happen
    every_proposal_nan = rule.step(state, lambda p: torch.full((p.shape[0],), math.nan, dtype=torch.float64))
    assert not bool(every_proposal_nan.accepted.any())
    assert torch.equal(every_proposal_nan.params, state.params)


@pytest.mark.skipif(not kernels.available(), reason="C kernels unavailable (no gcc, failed build, "
                                                     "NEGD_DISABLE_KERNELS)")
@pytest.mark.parametrize("sigma, kind", [(1e60, torch.isinf), (1e200, torch.isnan)])
@pytest.mark.parametrize("beta", [math.inf, 1e6])
def test_the_kernel_never_accepts_nan_or_inf(beta, sigma, kind):
    """A float64 ReLU network: at sigma = 1e60 the proposals' squared errors overflow to inf, at 1e200
    their sums of infinities of both signs are NaN (checked on the torch path); the kernel takes none."""
    spec = MLPSpec(2, 6, activation="relu")
    task = get_task("sin2pi", 40)
    torch_loss = MLPLoss(spec, task.inputs, task.targets, backend="torch")
    kernel_loss = MLPLoss(spec, task.inputs, task.targets, backend="c")
    rule = Neuroevolution(sigma, beta)
    state = rule.init(paper_init(spec.n_params, 0.5, seed=0, realizations=16).double(), kernel_loss, seed=3)
    proposals = state.params + rule.mutation(state)
    seen = torch_loss(proposals)
    assert bool(kind(seen).all())
    run = fused_step_fn(rule, state, kernel_loss)
    assert run is not None
    out, tally = run(state, 4)
    assert int(tally.accepted.sum()) == 0
    assert torch.equal(out.params, state.params) and torch.equal(out.loss, state.loss)


@pytest.mark.parametrize("kind", ["Neuroevolution", "AdaptiveMC"])
@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_no_optimizer_accepts_a_non_finite_loss(kind, beta):
    p = nn.Parameter(torch.zeros(3))
    opt = getattr(optim, kind)([p], sigma=0.1, beta=beta)
    values = iter([1.0] + [math.nan, math.inf, -math.inf] * 6)
    for _ in range(18):
        assert float(opt.step(lambda: torch.tensor(next(values), dtype=torch.float64))) == 1.0
    assert opt.accepted == 0 and torch.equal(p.detach(), torch.zeros(3))
