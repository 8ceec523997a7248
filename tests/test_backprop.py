"""negd.losses.backprop: closed-form backpropagation of MLP ensembles (mse) in torch, against autograd."""

from __future__ import annotations

import pytest
import torch

from negd.losses import backprop
from negd.losses.base import value_and_grad
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec

SPECS = [MLPSpec(1, 16), MLPSpec(1, 16, output_bias=False), MLPSpec(3, 7, 2, 3),
         MLPSpec(2, 6, 2, 1, activation="relu"),
         MLPSpec(2, 5, 3, 2, activation="identity", output_bias=False)]


def _problem(spec: MLPSpec, n_points: int = 37, realizations: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_points, spec.in_features, generator=gen, dtype=torch.float64)
    y = torch.randn(n_points, spec.out_features, generator=gen, dtype=torch.float64)
    params = 0.5 * torch.randn(realizations, spec.n_params, generator=gen, dtype=torch.float64)
    return x, y, params


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_gradient_equals_autograd_float64(spec):
    x, y, params = _problem(spec)
    loss_a, grad_a = value_and_grad(MLPLoss(spec, x, y, backend="torch"), params)
    loss_b, grad_b = backprop.mlp_value_and_grad(spec, x, y, params)
    assert loss_b.dtype == torch.float64 and grad_b.dtype == torch.float64
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-13, atol=0)
    assert _relative(grad_b, grad_a) < 1e-12


@pytest.mark.parametrize("spec", SPECS[:3], ids=str)
def test_gradient_float32_within_its_rounding(spec):
    """float32 forward and backward against the float64 gradient: ~1e-7 relative rounding, 1e-5 allowed."""
    x, y, params = _problem(spec)
    _, grad_ref = value_and_grad(MLPLoss(spec, x, y, backend="torch"), params)
    loss, grad = backprop.mlp_value_and_grad(spec, x, y, params.float())
    assert loss.dtype == torch.float64 and grad.dtype == torch.float32
    assert _relative(grad, grad_ref) < 1e-5


def test_blocks_do_not_change_the_numbers():
    spec = MLPSpec(2, 6)
    x, y, params = _problem(spec, realizations=7)
    whole = backprop.mlp_value_and_grad(spec, x, y, params, block=7)
    for block in (1, 3):
        part = backprop.mlp_value_and_grad(spec, x, y, params, block=block)
        torch.testing.assert_close(part[0], whole[0], rtol=1e-15, atol=0)
        torch.testing.assert_close(part[1], whole[1], rtol=1e-14, atol=1e-16)


def test_covers():
    assert backprop.covers(MLPSpec(8, 32), "mse") and backprop.covers(MLPSpec(activation="relu"), "mse")
    assert not backprop.covers(MLPSpec(activation="gelu"), "mse")
    assert not backprop.covers(MLPSpec(), "cross_entropy")
