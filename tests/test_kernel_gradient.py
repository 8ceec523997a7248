"""negd.kernels.gradient: the C kernel's loss and gradient (backprop) and fused Langevin steps."""

from __future__ import annotations

import pytest
import torch

from negd import kernels, rng
from negd.kernels import gradient as kgrad
from negd.losses.base import value_and_grad
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec
from negd.validation import NegdError

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason="C kernels unavailable (no gcc, failed build, NEGD_DISABLE_KERNELS)")

# P = 37 points: not a multiple of the vector width, so padded points must not enter the gradient.
SPECS = [MLPSpec(1, 16), MLPSpec(1, 16, output_bias=False), MLPSpec(3, 7, 2, 3),
         MLPSpec(2, 6, 2, 1, activation="relu"),
         MLPSpec(2, 5, 3, 2, activation="identity", output_bias=False), MLPSpec(8, 9), MLPSpec(1, 2, 6, 5)]


def _problem(spec: MLPSpec, n_points: int = 37, realizations: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_points, spec.in_features, generator=gen, dtype=torch.float64)
    y = torch.randn(n_points, spec.out_features, generator=gen, dtype=torch.float64)
    params = 0.5 * torch.randn(realizations, spec.n_params, generator=gen, dtype=torch.float64)
    return MLPLoss(spec, x, y), params


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("spec", SPECS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradient_equals_autograd(spec, dtype):
    """Against float64 autograd: float64 to rounding (1e-12), float32 to its own (~1e-7; 1e-5 allowed)."""
    loss_fn, params = _problem(spec)
    loss_a, grad_a = value_and_grad(MLPLoss(spec, loss_fn.inputs, loss_fn.targets, backend="torch"), params)
    loss_b, grad_b = kgrad.mlp_value_and_grad(loss_fn.kernel_data(params.to(dtype)), params.to(dtype))
    assert loss_b.dtype == torch.float64 and grad_b.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert _relative(loss_b, loss_a) < tol and _relative(grad_b, grad_a) < tol


def test_gradient_on_many_points_and_a_wide_net():
    """The paper's finite-beta shapes (1-256-1, 1000 points): several blocks of points, every row its own."""
    spec = MLPSpec(1, 256)
    x = torch.linspace(0, 1, 1000, dtype=torch.float64)[:, None]
    loss_fn = MLPLoss(spec, x, torch.sin(2 * torch.pi * x))
    gen = torch.Generator().manual_seed(1)
    params = 0.2 * torch.randn(3, spec.n_params, generator=gen, dtype=torch.float64)
    _, grad_a = value_and_grad(MLPLoss(spec, x, loss_fn.targets, backend="torch"), params)
    _, grad_b = kgrad.mlp_value_and_grad(loss_fn.kernel_data(params), params)
    assert _relative(grad_b, grad_a) < 1e-12


def test_gradient_is_deterministic_and_independent_of_threads_and_rows():
    loss_fn, params = _problem(MLPSpec(2, 6), realizations=6)
    data = loss_fn.kernel_data(params)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = kgrad.mlp_value_and_grad(data, params)
        torch.set_num_threads(2)
        two = kgrad.mlp_value_and_grad(data, params)
    finally:
        torch.set_num_threads(threads)
    row = kgrad.mlp_value_and_grad(data, params[4:5])
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    assert torch.equal(row[0], one[0][4:5]) and torch.equal(row[1], one[1][4:5])


def test_networks_and_parameters_it_does_not_take():
    loss_fn, params = _problem(MLPSpec(1, 4, activation="gelu"))
    assert not kgrad.covers_gradient(loss_fn.kernel_data(params))
    assert kgrad.mlp_value_and_grad(loss_fn.kernel_data(params), params) is None
    loss_fn, params = _problem(MLPSpec(1, 4))
    data = loss_fn.kernel_data(params)
    assert kgrad.covers_gradient(data)
    assert kgrad.mlp_value_and_grad(data, params.float()) is None  # dtype of another layout
    labels = torch.tensor([0, 1, 1, 0])
    xent = MLPLoss(MLPSpec(1, 4, 2, 2), torch.randn(4, 2), labels, loss="cross_entropy")
    assert not kgrad.covers_gradient(xent.kernel_data(torch.zeros(1, xent.n_params)))


def _langevin_loop(loss_fn, params, realization, *, seed, step, steps, alpha, noise):
    """The rule's arithmetic in torch, with the kernel's gradient: x - alpha g + noise xi."""
    data = loss_fn.kernel_data(params)
    _, grad = kgrad.mlp_value_and_grad(data, params)
    for s in range(step, step + steps):
        xi = rng.normal(seed, realization, s, params.shape[1], stream=rng.STREAM_LANGEVIN).to(params.dtype)
        params = params - torch.as_tensor(alpha, dtype=params.dtype) * grad
        params = params + torch.as_tensor(noise, dtype=params.dtype) * xi
        loss, grad = kgrad.mlp_value_and_grad(data, params)
    return params, loss, grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("alpha", [0.05, "per-parameter"])
def test_fused_langevin_is_the_loop_bit_for_bit(dtype, alpha):
    loss_fn, params = _problem(MLPSpec(2, 6), realizations=4)
    params = params.to(dtype)
    if alpha == "per-parameter":
        alpha = torch.linspace(0.01, 0.1, loss_fn.n_params)
    realization = torch.tensor([0, 5, 2, 9])
    want = _langevin_loop(loss_fn, params, realization, seed=3, step=7, steps=12, alpha=alpha, noise=0.02)
    data = loss_fn.kernel_data(params)
    _, grad = kgrad.mlp_value_and_grad(data, params)
    got = kgrad.fused_langevin(data, params, grad, realization, seed=3, step=7, steps=12, alpha=alpha,
                                 noise=0.02, stream=rng.STREAM_LANGEVIN)
    for a, b in zip((got.params, got.loss, got.grad), want):
        assert torch.equal(a, b)


def test_fused_langevin_splits_into_calls_and_rows():
    loss_fn, params = _problem(MLPSpec(1, 8), realizations=4)
    data = loss_fn.kernel_data(params)
    rid = torch.arange(4)
    _, grad = kgrad.mlp_value_and_grad(data, params)
    kw = dict(seed=1, alpha=0.05, noise=0.01, stream=rng.STREAM_LANGEVIN)
    whole = kgrad.fused_langevin(data, params, grad, rid, step=0, steps=10, **kw)
    first = kgrad.fused_langevin(data, params, grad, rid, step=0, steps=4, **kw)
    second = kgrad.fused_langevin(data, first.params, first.grad, rid, step=4, steps=6, **kw)
    rows = kgrad.fused_langevin(data, params[2:], grad[2:], rid[2:], step=0, steps=10, **kw)
    assert torch.equal(second.params, whole.params) and torch.equal(second.loss, whole.loss)
    assert torch.equal(rows.params, whole.params[2:]) and torch.equal(rows.grad, whole.grad[2:])
    # no noise: plain gradient descent, no normals drawn
    still = kgrad.fused_langevin(data, params, grad, rid, step=0, steps=1, **(kw | {"noise": 0.0}))
    assert torch.equal(still.params, params - 0.05 * grad)


def test_fused_langevin_bad_counters():
    loss_fn, params = _problem(MLPSpec(1, 4), realizations=2)
    data = loss_fn.kernel_data(params)
    kw = dict(seed=0, steps=1, alpha=0.1, noise=0.1, stream=rng.STREAM_LANGEVIN)
    with pytest.raises(NegdError, match="realization"):
        kgrad.fused_langevin(data, params, params, torch.tensor([0, -1]), step=0, **kw)
    with pytest.raises(NegdError, match="step"):
        kgrad.fused_langevin(data, params, params, torch.tensor([0, 1]), step=2**44, **kw)
