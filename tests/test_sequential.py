"""negd.losses.sequential: the batched layer-by-layer evaluation equals vmap(functional_call) of the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from negd.losses.base import value_and_grad
from negd.losses.models import flat_params
from negd.losses.module import ModuleLoss
from negd.losses.sequential import compile_sequential


def _images(p=37, c=1, h=8, w=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(p, c, h, w, generator=g), torch.randint(0, classes, (p,), generator=g)


MODELS = {
    "digits cnn": lambda: nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Flatten(),
                                        nn.Linear(512, 4)),
    "two convs, stride, pool, no bias": lambda: nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 2, stride=2, bias=False), nn.GELU(), nn.MaxPool2d(1),
        nn.Flatten(), nn.Linear(36, 4, bias=False)),
    "grouped conv, avg pool": lambda: nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Sigmoid(), nn.Conv2d(4, 4, 3, groups=2, padding=1),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 4)),
    "conv1d": lambda: nn.Sequential(nn.Flatten(2), nn.Conv1d(1, 5, 5, padding=2), nn.Tanh(), nn.Flatten(),
                                    nn.Linear(320, 4)),
}


def _params(make, r, seed=1):
    torch.manual_seed(seed)
    return torch.stack([flat_params(make()) for _ in range(r)])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_batched_sequential_equals_per_network_forward(name):
    make = MODELS[name]
    x, y = _images()
    params = _params(make, 5)
    fast = ModuleLoss(make(), x, y, loss="cross_entropy")
    assert fast.sequential is not None
    generic = ModuleLoss(make(), x, y, loss=lambda pred, t: F.cross_entropy(pred, t).double())
    assert generic.sequential is None  # a callable loss takes the vmap path
    got, want = fast(params), generic(params)
    assert got.dtype == torch.float64
    assert torch.allclose(got, want, rtol=2e-6, atol=0)
    # chunking does not change a realization's loss (beyond float32 rounding of the products)
    fast.chunk_size = 2
    assert torch.allclose(fast(params), got, rtol=1e-6, atol=0)
    # mse on the outputs, against the plain module row by row
    targets = torch.randn(x.shape[0], 4)
    mse = ModuleLoss(make(), x, targets)(params)
    model = make()
    for r in (0, 4):
        torch.nn.utils.vector_to_parameters(params[r], model.parameters())
        with torch.no_grad():
            assert torch.allclose(mse[r], ((model(x) - targets) ** 2).double().mean(), rtol=2e-6)


def test_gradients_of_the_batched_path_equal_vmaps():
    make = MODELS["digits cnn"]
    x, y = _images()
    params = _params(make, 3)
    loss_fast, grad_fast = value_and_grad(ModuleLoss(make(), x, y, loss="cross_entropy"), params)
    generic = ModuleLoss(make(), x, y, loss=lambda p, t: F.cross_entropy(p, t))
    loss_ref, grad_ref = value_and_grad(generic, params)
    assert torch.allclose(loss_fast.double(), loss_ref.double(), rtol=1e-6)
    assert torch.allclose(grad_fast, grad_ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)),
    nn.Sequential(nn.Linear(3, 3), nn.Dropout()),
    nn.Sequential(nn.Flatten(0), nn.Linear(3, 3)),
    nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.Flatten()),
    nn.Linear(3, 3),
])
def test_unsupported_models_fall_back_to_vmap(model):
    assert compile_sequential(model) is None


def test_compile_failure_falls_back_with_a_warning(monkeypatch):
    def broken_compile(fn, **kw):
        def run(*a):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    make = MODELS["digits cnn"]
    x, y = _images()
    params = _params(make, 2)
    loss = ModuleLoss(make(), x, y, loss="cross_entropy", compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        first = loss(params)
    assert torch.equal(loss(params), first)
    assert torch.allclose(first, ModuleLoss(make(), x, y, loss="cross_entropy")(params))


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Sequential(nn.Conv1d(1, 5, 5, padding=2), nn.ReLU(), nn.GELU(), nn.Flatten(),
                           nn.Linear(200, 4)), (29, 1, 40)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.Flatten(), nn.Linear(108, 4, bias=False),
                           nn.Tanh(), nn.Linear(4, 4)), (29, 2, 8, 8)),
])
def test_fused_convolution_head_equals_the_module(make, shape):
    from negd.losses.sequential import _conv_head

    assert _conv_head(list(make())) is not None  # the fused first convolution + Flatten + Linear
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 4, (shape[0],), generator=torch.Generator().manual_seed(4))
    params = _params(make, 3)
    got = ModuleLoss(make(), x, y, loss="cross_entropy")(params)
    want = ModuleLoss(make(), x, y, loss=lambda pred, t: F.cross_entropy(pred, t).double())(params)
    assert torch.allclose(got, want, rtol=2e-6, atol=0)
