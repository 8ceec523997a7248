"""negd.experiments.run.twin: TwinLoss's gradient paths and the Langevin twin's fused steps (negd.engine)."""

from __future__ import annotations

import pytest
import torch

from negd import kernels
from negd.engine import advance, advance_counted, fused_step_fn
from negd.experiments.run.twin import TwinLoss
from negd.losses.base import value_and_grad
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import GradientDescent, Langevin, MomentMatchedLangevin, NormalizedGradientDescent
from negd.tasks import get_task

needs_kernel = pytest.mark.skipif(not kernels.available(),
                                  reason="C kernels unavailable (no gcc, failed build, NEGD_DISABLE_KERNELS)")
TASK = get_task("sin2pi")
RULE = Langevin(alpha=0.05, noise=0.01)


def _twin(spec: MLPSpec, backend: str = "auto") -> TwinLoss:
    return TwinLoss(MLPLoss(spec, TASK.inputs, TASK.targets, backend=backend))


def _start(spec: MLPSpec, dtype: torch.dtype, rule=RULE, loss_fn=None, realizations: int = 4):
    x0 = paper_init(spec.n_params, 0.3, seed=1).to(dtype)
    return rule.init(x0, loss_fn or _twin(spec), seed=3, realizations=realizations)


@pytest.mark.parametrize("spec", [MLPSpec(1, 16), MLPSpec(3, 5), MLPSpec(2, 4, activation="gelu")], ids=str)
def test_value_and_grad_paths_agree(spec):
    gen = torch.Generator().manual_seed(0)
    params = 0.4 * torch.randn(3, spec.n_params, generator=gen, dtype=torch.float64)
    loss_a, grad_a = value_and_grad(MLPLoss(spec, TASK.inputs, TASK.targets, backend="torch"), params)
    for backend in ("auto", "torch"):  # the kernel where it covers the network; batched torch backprop
        twin = _twin(spec, backend)
        assert twin.fast == (spec.activation != "gelu")  # gelu: autograd
        loss_b, grad_b = twin.value_and_grad(params)
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-12, atol=0)
        torch.testing.assert_close(grad_b, grad_a, rtol=1e-10, atol=1e-12)


@needs_kernel
def test_fused_steps_fit_the_gradient_rules_of_a_twin_loss_only():
    spec = MLPSpec(1, 8)
    state = _start(spec, torch.float64)
    assert fused_step_fn(RULE, state, _twin(spec)) is not None
    assert fused_step_fn(GradientDescent(alpha=0.1), state, _twin(spec)) is not None
    assert fused_step_fn(RULE, state, _twin(spec, "torch")) is None  # backend "torch" opts out
    assert fused_step_fn(RULE, state, _twin(spec).loss_fn) is None  # a plain MLPLoss keeps autograd
    assert fused_step_fn(NormalizedGradientDescent(alpha=0.1), state, _twin(spec)) is None
    assert fused_step_fn(RULE, state, _twin(MLPSpec(1, 8, activation="gelu"))) is None


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("rule", [RULE, GradientDescent(alpha=0.05, noise=0.02), GradientDescent(alpha=0.05)],
                         ids=["langevin", "gd-noise", "gd"])
def test_fused_twin_is_the_rules_loop_bit_for_bit(dtype, rule):
    spec, twin = MLPSpec(2, 6), _twin(MLPSpec(2, 6))
    state = _start(spec, dtype, rule, twin)
    fused, accepted = advance_counted(rule, state, twin, 25)
    loop = state
    for _ in range(25):
        loop = rule.step(loop, twin)
    assert torch.equal(fused.params, loop.params) and torch.equal(fused.loss, loop.loss)
    assert torch.equal(fused.extras["grad"], loop.extras["grad"]) and fused.step == loop.step == 25
    assert torch.equal(accepted, torch.full((4,), 25)) and bool(fused.accepted.all())


@needs_kernel
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_kernel_trajectories_equal_the_torch_path_within_rounding(dtype, tol):
    """Same noise, same roundings of the step: only the gradient's summation order differs. 100 steps of
    the 1-32-1 net; float32 gradients differ by ~1e-7 relative per step, so 1e-4 of the parameter scale."""
    spec = MLPSpec(1, 32)
    kernel = advance(RULE, _start(spec, dtype, loss_fn=_twin(spec)), _twin(spec), 100)
    torch_path = advance(RULE, _start(spec, dtype, loss_fn=_twin(spec, "torch")), _twin(spec, "torch"), 100)
    scale = float(torch_path.params.abs().max())
    assert float((kernel.params - torch_path.params).abs().max()) < tol * scale
    torch.testing.assert_close(kernel.loss, torch_path.loss, rtol=10 * tol, atol=0)


@needs_kernel
def test_same_seed_same_numbers():
    spec = MLPSpec(1, 16)
    a = advance(RULE, _start(spec, torch.float32), _twin(spec), 20)
    b = advance(RULE, _start(spec, torch.float32), _twin(spec), 20)
    assert torch.equal(a.params, b.params) and torch.equal(a.loss, b.loss)


def test_matched_twin_uses_the_closed_form_gradient():
    """MomentMatchedLangevin steps with TwinLoss's gradient (kernel or torch) agree with autograd's."""
    spec = MLPSpec(1, 16)
    rule = MomentMatchedLangevin(sigma=0.01, beta=1000.0, time_step=1.0)
    autograd_loss = MLPLoss(spec, TASK.inputs, TASK.targets, backend="torch")
    ref = advance(rule, _start(spec, torch.float64, rule, autograd_loss), autograd_loss, 20)
    got = advance(rule, _start(spec, torch.float64, rule, _twin(spec)), _twin(spec), 20)
    torch.testing.assert_close(got.params, ref.params, rtol=1e-10, atol=1e-12)
