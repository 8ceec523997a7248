"""negd.losses.layout: the fast paths (batched Sequential, MLPLoss via loss_for) compute the model's own
loss on every model they accept, and every model whose parameters are not the plain (weight, bias)
layout goes to the general path (functional_call + vmap), which also computes the model's own loss."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from negd.losses.layout import plain_layout
from negd.losses.models import MLPSpec, flat_params, load_flat_params
from negd.losses.module import ModuleLoss, loss_for
from negd.losses.sequential import compile_sequential

WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d)


def _old_weight_norm(layer):
    with warnings.catch_warnings():  # torch.nn.utils.weight_norm is deprecated, still in use
        warnings.simplefilter("ignore")
        return torch.nn.utils.weight_norm(layer)


def _reregistered():
    lin = nn.Linear(3, 4)
    weight = lin.weight
    del lin.weight
    lin.register_parameter("weight", weight)  # now (bias, weight)
    return nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2))


def _shared():
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), a, nn.Tanh(), b, nn.Tanh(), nn.Linear(4, 2))


def _twice():
    hidden = nn.Linear(4, 4)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), hidden, nn.Tanh(), hidden, nn.Tanh(), nn.Linear(4, 2))


def _extra_parameter():
    lin = nn.Linear(3, 4)
    lin.register_parameter("scale", nn.Parameter(torch.ones(1)))
    return nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2))


def _parametrized_activation():
    act = nn.Tanh()
    act.register_parameter("unused", nn.Parameter(torch.ones(2)))
    return nn.Sequential(nn.Linear(3, 4), act, nn.Linear(4, 2))


def _hooked():
    lin = nn.Linear(3, 4)
    lin.register_forward_hook(lambda _m, _i, out: 2 * out)
    return nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2))


def _pre_hooked_container():
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    model.register_forward_pre_hook(lambda _m, args: (args[0] * 3,))
    return model


class _Residual(nn.Sequential):
    def forward(self, x):
        return super().forward(x) + x[..., :2]


def _instance_forward():
    lin = nn.Linear(3, 4)
    plain = lin.forward
    lin.forward = lambda x: plain(x) ** 2
    return nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2))


def _reshaped_weight():
    lin = nn.Linear(4, 4)  # declares 4 inputs, holds a [4, 3] weight: the model takes 3 inputs
    lin.weight = nn.Parameter(torch.randn(4, 3))
    return nn.Sequential(lin, nn.Tanh(), nn.Linear(4, 2))


def _mlp(bias=True):
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2, bias=bias))


# Models the fast paths accept: (constructor, input shape).
ACCEPTED = {
    "mlp": (_mlp, (23, 3)),
    "mlp, output without bias": (lambda: _mlp(bias=False), (23, 3)),
    "relu mlp after flatten": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(),
                                                     nn.Linear(4, 2)), (23, 2, 3)),
    "linear stack without biases": (lambda: nn.Sequential(nn.Linear(3, 5, bias=False), nn.GELU(),
                                                          nn.Linear(5, 2, bias=False)), (23, 3)),
    "conv2d head": (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                                          nn.Linear(48, 2)), (23, 1, 4, 4)),
    "two convs, pooling": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(),
                                                 nn.Conv2d(2, 2, 2, bias=False), nn.MaxPool2d(1),
                                                 nn.Flatten(), nn.Linear(2, 2)), (23, 1, 4, 4)),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(2, 3, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(12, 2)),
               (23, 2, 6)),
}

# Models whose parameters are not the plain layout: (constructor, input shape).
REJECTED = {
    "torch.nn.utils.weight_norm": (lambda: nn.Sequential(_old_weight_norm(nn.Linear(3, 4)), nn.Tanh(),
                                                         nn.Linear(4, 2)), (23, 3)),
    "parametrizations.weight_norm": (lambda: nn.Sequential(parametrizations.weight_norm(nn.Linear(3, 4)),
                                                           nn.Tanh(), nn.Linear(4, 2)), (23, 3)),
    "parametrizations.orthogonal": (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(),
                                                          parametrizations.orthogonal(nn.Linear(4, 4)),
                                                          nn.Tanh(), nn.Linear(4, 2)), (23, 3)),
    "weight_norm conv": (lambda: nn.Sequential(_old_weight_norm(nn.Conv2d(1, 2, 3)), nn.Flatten(),
                                               nn.Linear(8, 2)), (23, 1, 4, 4)),
    "re-registered (bias, weight)": (_reregistered, (23, 3)),
    "shared weight": (_shared, (23, 3)),
    "same layer twice": (_twice, (23, 3)),
    "extra parameter": (_extra_parameter, (23, 3)),
    "parameter on an activation": (_parametrized_activation, (23, 3)),
    "forward hook": (_hooked, (23, 3)),
    "pre-hook on the container": (_pre_hooked_container, (23, 3)),
    "Sequential subclass with its own forward": (
        lambda: _Residual(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)), (23, 3)),
    "instance forward": (_instance_forward, (23, 3)),
    "weight of another shape": (_reshaped_weight, (23, 3)),
}


def _data(shape, outputs=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g), torch.randn(shape[0], outputs, generator=g)


def _rows(model, r=3, seed=1):
    """R flat parameter vectors: the model's own and perturbed copies."""
    g = torch.Generator().manual_seed(seed)
    base = flat_params(model)
    return torch.stack([base] + [base + 0.3 * torch.randn(base.shape, generator=g) for _ in range(r - 1)])


def _model_losses(model, params, x, y):
    """The model's own mse, row by row (the truth every path must equal)."""
    out = []
    with torch.no_grad():
        for row in params:
            load_flat_params(model, row)
            out.append(((model(x) - y) ** 2).double().mean())
    return torch.stack(out)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_fast_path_equals_functional_call_and_the_model(name):
    make, shape = ACCEPTED[name]
    torch.manual_seed(2)
    model = make()
    assert plain_layout(model, WEIGHTED)
    x, y = _data(shape)
    params = _rows(model)
    fast = ModuleLoss(model, x, y)
    assert fast.sequential is not None
    general = ModuleLoss(model, x, y)
    general.sequential = None  # functional_call + vmap
    got, want = fast(params), general(params)
    assert torch.allclose(got, want, rtol=1e-5, atol=0)
    assert torch.allclose(got, _model_losses(model, params, x, y), rtol=1e-5, atol=0)
    chosen = loss_for(model, x, y)  # MLPLoss where MLPSpec accepts the model
    assert torch.allclose(chosen(params), want, rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_other_layouts_take_the_general_path_and_equal_the_model(name):
    make, shape = REJECTED[name]
    torch.manual_seed(2)
    model = make()
    assert not plain_layout(model, WEIGHTED)
    assert compile_sequential(model) is None
    assert MLPSpec.from_module(model) is None
    x, y = _data(shape)
    params = _rows(model)
    want = _model_losses(model, params, x, y)
    loss = loss_for(model, x, y)
    assert isinstance(loss, ModuleLoss) and loss.sequential is None
    assert torch.allclose(loss(params), want, rtol=1e-5, atol=0)


def test_issue_example_weight_norm_gives_the_models_loss():
    """Issue 19's example: a weight_norm Linear read as (weight, bias) gave another loss."""
    torch.manual_seed(0)
    model = nn.Sequential(_old_weight_norm(nn.Linear(3, 4)), nn.Tanh(), nn.Linear(4, 1))
    x, y = _data((10, 3), outputs=1)
    with torch.no_grad():
        want = ((model(x) - y) ** 2).double().mean()
    assert torch.allclose(ModuleLoss(model, x, y)(flat_params(model)[None])[0], want, rtol=1e-6)
