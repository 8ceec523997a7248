"""Loss constructors refuse data that makes every loss NaN: an empty data set, NaN or infinite inputs
or targets (issue 19, class 5: a run that never moves, reported as nothing). One line, naming the field."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from negd.losses.minibatch import MinibatchLoss
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec
from negd.losses.module import ModuleLoss, loss_for
from negd.validation import NegdError

SPEC = MLPSpec(depth=1, width=4)


def _x(p=10):
    return torch.linspace(-1, 1, p)[:, None]


def _poisoned(t, value):
    t = t.clone()
    t.view(-1)[3] = value
    return t


BAD = {  # name -> (inputs, targets, field)
    "empty data set": (torch.zeros(0, 1), torch.zeros(0, 1), "inputs"),
    "empty targets": (_x(), torch.zeros(10, 0), "targets"),
    "NaN input": (_poisoned(_x(), math.nan), torch.sin(_x()), "inputs"),
    "inf input": (_poisoned(_x(), math.inf), torch.sin(_x()), "inputs"),
    "-inf input": (_poisoned(_x(), -math.inf), torch.sin(_x()), "inputs"),
    "NaN target": (_x(), _poisoned(torch.sin(_x()), math.nan), "targets"),
    "inf target (float64)": (_x(), _poisoned(torch.sin(_x()).double(), math.inf), "targets"),
    "not a tensor": ([[0.0]] * 10, torch.sin(_x()), "inputs"),
}

CONSTRUCTORS = {
    "MLPLoss": lambda x, y: MLPLoss(SPEC, x, y),
    "MLPLoss torch backend": lambda x, y: MLPLoss(SPEC, x, y, backend="torch"),
    "ModuleLoss": lambda x, y: ModuleLoss(nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)), x, y),
    "ModuleLoss, callable loss": lambda x, y: ModuleLoss(nn.Sequential(nn.Linear(1, 1)), x, y,
                                                         loss=lambda p, t: ((p - t) ** 2).double().mean()),
    "loss_for": lambda x, y: loss_for(nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)), x, y),
    "MinibatchLoss": lambda x, y: MinibatchLoss.for_mlp(SPEC, x, y, batch_size=1),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("kind", sorted(CONSTRUCTORS))
def test_bad_data_is_refused_in_one_line_naming_the_field(kind, case):
    x, y, field = BAD[case]
    with pytest.raises(NegdError, match=f"^{field}: must") as err:
        CONSTRUCTORS[kind](x, y)
    assert "\n" not in str(err.value)


def test_the_message_counts_the_bad_values():
    y = torch.sin(_x())
    y[2], y[5], y[7] = math.nan, math.inf, math.nan
    with pytest.raises(NegdError, match=r"2 NaN and 1 infinite values \(the first at index \[2, 0\]\)"):
        MLPLoss(SPEC, _x(), y)


@pytest.mark.parametrize("kind", sorted(CONSTRUCTORS))
def test_finite_data_is_accepted(kind):
    loss = CONSTRUCTORS[kind](_x(), torch.sin(_x()))
    assert loss is not None


def test_class_labels_are_integers_and_not_checked_for_finiteness():
    x = torch.randn(6, 2)
    loss = MLPLoss(MLPSpec(depth=1, width=3, in_features=2, out_features=3), x,
                   torch.tensor([0, 1, 2, 0, 1, 2]), loss="cross_entropy")
    assert torch.isfinite(loss(torch.zeros(2, loss.n_params))).all()
