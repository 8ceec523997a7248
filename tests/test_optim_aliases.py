"""negd.optim: a parameter listed twice, in one group or two, or two parameters overlapping in memory
are refused in one line (issue 19: a rejected step left part of the mutation in the model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from negd import optim
from negd.validation import NegdError

OPTIMIZERS = {"Neuroevolution": optim.Neuroevolution, "AdaptiveMC": optim.AdaptiveMC}


def _tied():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    return [a.weight, a.bias, b.weight, b.bias]


def _same_twice():
    w = nn.Parameter(torch.randn(4))
    return [w, nn.Parameter(torch.randn(2)), w]


def _two_groups():
    w = nn.Parameter(torch.randn(4))
    return [{"params": [w]}, {"params": [w, nn.Parameter(torch.randn(2))]}]


def _overlapping_views():
    base = torch.randn(6)
    return [base[:4], base[2:]]


def _view_and_its_base():
    base = torch.randn(2, 3)
    return [base, base.view(6)]


def _strided_views():
    base = torch.randn(4, 4)
    return [{"params": [base[:, 1]]}, {"params": [base[2]]}]  # share element (2, 1)


ALIASED = {"tied weight": _tied, "same tensor twice": _same_twice, "same tensor in two groups": _two_groups,
           "overlapping views": _overlapping_views, "a view and its base": _view_and_its_base,
           "column and row of one matrix": _strided_views}


@pytest.mark.parametrize("name", sorted(ALIASED))
@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_aliased_parameters_are_refused_in_one_line(kind, name):
    pattern = r"^params: parameter \d+ of param group \d+ (is listed twice|shares)"
    with pytest.raises(NegdError, match=pattern) as err:
        OPTIMIZERS[kind](ALIASED[name](), sigma=0.1)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_add_param_group_refuses_a_parameter_already_held(kind):
    w = nn.Parameter(torch.randn(3))
    opt = OPTIMIZERS[kind]([w], sigma=0.1)
    with pytest.raises(NegdError, match="param group 1 is listed twice"):
        opt.add_param_group({"params": w})
    assert len(opt.param_groups) == 1


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_disjoint_views_of_one_tensor_are_accepted_and_rejected_steps_restore_them(kind):
    """Views that do not overlap are independent parameters: every rejected step leaves them as
    they were, every accepted one leaves the loss it reports."""
    base = torch.randn(8, generator=torch.Generator().manual_seed(0))
    first, second = base[:3], base[3:].view(5)
    target = torch.linspace(-1, 1, 8)

    def closure():
        return ((base - target) ** 2).sum().double()

    opt = OPTIMIZERS[kind]([{"params": [first]}, {"params": [second]}], sigma=0.3, seed=1)
    rejected = 0
    for _ in range(60):
        before = base.clone()
        kept = opt.step(closure)
        if torch.equal(base, before):
            rejected += 1
        assert float(kept) == float(closure())  # the model holds exactly the reported loss
    assert 0 < rejected < 60
