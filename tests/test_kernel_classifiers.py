"""The fused kernel on classifiers (issue 10): activations tanh/relu/gelu/identity, softmax
cross-entropy, float32 and float64 parameters, against the torch path of MLPLoss and negd.rules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from negd import kernels, loss_for
from negd.engine import fused_step_fn
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import GradientDescent, Neuroevolution
from negd.validation import NegdError

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason="C kernels unavailable (no gcc, failed build, NEGD_DISABLE_KERNELS)")

ACTIVATIONS = ["tanh", "relu", "gelu", "identity"]
# float32 forward passes (rounding ~1e-7 per operation, different summation orders, the kernel's own
# tanh/erf/exp/log); float64 ones agree to a few ulp of each operation
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def _classes(points: int = 45, features: int = 7, classes: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(points, features, generator=gen), torch.randint(0, classes, (points,), generator=gen)


def _targets(loss: str, x: torch.Tensor, labels: torch.Tensor, outputs: int) -> torch.Tensor:
    if loss == "cross_entropy":
        return labels
    return torch.sin(x[:, :outputs] * 2).contiguous()


# --------------------------------------------------------------------------- elementwise accuracy
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_erf_and_gelu_accuracy(dtype):
    x = torch.linspace(-10, 10, 400_001, dtype=dtype)
    exact_erf = torch.erf(x.double())
    exact_gelu = torch.nn.functional.gelu(x.double())
    erf_err = (kernels.erf(x).double() - exact_erf).abs().max().item()
    scale = x.double().abs().clamp_min(1)
    gelu_err = ((kernels.activation("gelu", x).double() - exact_gelu).abs() / scale).max()
    if dtype == torch.float32:
        assert erf_err < 2e-7  # measured 1.1e-7, near |x| = 0.85 (torch's float32 erf: 3.2e-8; ulp(1) 6e-8)
        assert gelu_err < 2e-7  # error over max(1, |x|): measured 1.3e-7 (torch's own float32 gelu: 1.6e-7)
    else:
        assert erf_err < 4e-16  # libm's erf lane by lane: within 1 ulp
        assert gelu_err < 4e-16
    special = torch.tensor([0.0, float("inf"), -float("inf"), float("nan")], dtype=dtype)
    erf = kernels.erf(special)
    assert erf[0] == 0 and erf[1] == 1 and erf[2] == -1 and torch.isnan(erf[3])
    gelu = kernels.activation("gelu", special)
    assert gelu[0] == 0 and gelu[1] == float("inf") and torch.isnan(gelu[3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_and_identity_are_exact(dtype):
    x = torch.cat([torch.randn(1003, dtype=dtype), torch.tensor([float("nan"), -0.0, 0.0], dtype=dtype)])
    relu = kernels.activation("relu", x)
    assert torch.equal(relu[:-3], torch.relu(x[:-3])) and torch.isnan(relu[-3])  # NaN propagates
    assert torch.equal(kernels.activation("identity", x)[:-3], x[:-3])
    with pytest.raises(NegdError, match="^activation: "):
        kernels.activation("swish", x)


# --------------------------------------------------------------------------- losses
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_loss_agrees_with_torch(activation, loss, dtype):
    x, labels = _classes()  # 45 points: not a multiple of the vector width (padding is masked)
    spec = MLPSpec(depth=2, width=9, in_features=7, out_features=5, activation=activation)
    targets = _targets(loss, x, labels, spec.out_features)
    params = (paper_init(spec.n_params, 0.7, seed=2, realizations=12)).to(dtype)
    reference = MLPLoss(spec, x, targets, loss=loss, backend="torch")(params)
    fused = MLPLoss(spec, x, targets, loss=loss, backend="c")(params)
    assert fused.dtype == reference.dtype == torch.float64
    torch.testing.assert_close(fused, reference, rtol=TOLERANCE[dtype], atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_digits_mlp_loss_agrees_with_torch(dtype):
    """The issue's set-up: Flatten, Linear(64, 32), Tanh, Linear(32, 10), cross-entropy on digits."""
    pytest.importorskip("sklearn")
    from negd.tasks import get_task

    task = get_task("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    images = task.inputs.reshape(-1, 8, 8)
    fast = loss_for(model, images, task.targets, loss="cross_entropy")
    assert isinstance(fast, MLPLoss) and fast.backend == "auto"
    params = (paper_init(fast.n_params, 0.2, seed=5, realizations=8)).to(dtype)
    assert fast.kernel_data(params) is not None  # loss_for picks the kernel for this model
    reference = MLPLoss(fast.spec, fast.inputs, task.targets, loss="cross_entropy", backend="torch")(params)
    torch.testing.assert_close(fast(params), reference, rtol=TOLERANCE[dtype], atol=0)


def test_non_finite_logits_give_non_finite_losses():
    x, labels = _classes()
    spec = MLPSpec(depth=1, width=4, in_features=7, out_features=5, activation="relu")
    loss = MLPLoss(spec, x, labels, loss="cross_entropy", backend="c")
    params = paper_init(spec.n_params, 0.5, seed=1, realizations=3)
    params[1, 0] = float("nan")
    params[2, :] = 1e30  # logits overflow to inf: inf - inf is NaN
    out = loss(params)
    assert math.isfinite(out[0]) and not math.isfinite(out[1]) and not math.isfinite(out[2])


# --------------------------------------------------------------------------- fused steps
def _reference(rule, state, loss_fn, steps):
    counts = torch.zeros(state.n_realizations, dtype=torch.int64)
    for _ in range(steps):
        state = rule.step(state, loss_fn)
        counts += state.accepted
    return state, counts


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fused_classifier_steps_match_the_torch_loop(activation, dtype):
    x, labels = _classes(points=60)
    spec = MLPSpec(depth=1, width=12, in_features=7, out_features=5, activation=activation)
    fused_loss = MLPLoss(spec, x, labels, loss="cross_entropy", backend="c")
    torch_loss = MLPLoss(spec, x, labels, loss="cross_entropy", backend="torch")
    beta = math.inf if activation in ("tanh", "gelu") else 200.0
    rule = Neuroevolution(0.05, beta)
    state = rule.init(paper_init(spec.n_params, 0.5, seed=4).to(dtype), torch_loss, realizations=32, seed=7)
    run = fused_step_fn(rule, state, fused_loss)
    assert run is not None and fused_step_fn(rule, state, torch_loss) is None
    fused, tally = run(state, 30)
    ref, ref_counts = _reference(rule, state, torch_loss, 30)
    same = (fused.params == ref.params).all(dim=1)
    # The noise is bit-identical; only accept decisions on near-ties (|dU| below the forward passes'
    # disagreement, ~1e-7 U in float32) can differ, which a 0.05 mutation almost never meets.
    assert same.float().mean() >= 0.9, f"identical fraction {same.float().mean():.3f}"
    assert torch.equal(tally.accepted[same], ref_counts[same])
    torch.testing.assert_close(fused.loss[same], ref.loss[same], rtol=TOLERANCE[dtype], atol=0)
    assert 0 < tally.accepted.sum() < 32 * 30  # some moves accepted, some rejected


def test_fused_digits_mlp_matches_the_torch_loop():
    """The issue's set-up, loss_for(Flatten, Linear(64, 32), Tanh, Linear(32, 10)) on digits."""
    pytest.importorskip("sklearn")
    from negd.tasks import get_task

    task = get_task("digits")
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    fast = loss_for(model, task.inputs.reshape(-1, 8, 8), task.targets, loss="cross_entropy")
    slow = MLPLoss(fast.spec, fast.inputs, task.targets, loss="cross_entropy", backend="torch")
    rule = Neuroevolution(0.01, math.inf)
    state = rule.init(paper_init(fast.n_params, 0.2, seed=1), slow, realizations=8, seed=2)
    fused, tally = fused_step_fn(rule, state, fast)(state, 10)
    ref, ref_counts = _reference(rule, state, slow, 10)
    same = (fused.params == ref.params).all(dim=1)
    assert same.float().mean() >= 0.75, f"identical fraction {same.float().mean():.3f}"  # 6 of 8
    assert torch.equal(tally.accepted[same], ref_counts[same]) and tally.accepted.sum() > 0


def test_gradient_states_use_torch():
    x, labels = _classes()
    spec = MLPSpec(depth=1, width=6, in_features=7, out_features=5, activation="gelu")
    loss = MLPLoss(spec, x, labels, loss="cross_entropy")
    params = paper_init(spec.n_params, 0.5, seed=3, realizations=2)
    assert loss.kernel_data(params) is not None
    needs_grad = params.clone().requires_grad_(True)
    assert loss.kernel_data(needs_grad) is None  # autograd: the torch path
    value = loss(needs_grad)
    value.sum().backward()
    assert needs_grad.grad is not None and torch.isfinite(needs_grad.grad).all()
    rule = GradientDescent(0.1)
    assert fused_step_fn(rule, rule.init(params, loss), loss) is None


# --------------------------------------------------------------------------- bad input
def test_bad_labels_are_one_line_errors():
    x, labels = _classes()
    spec = MLPSpec(depth=1, width=4, in_features=7, out_features=5)
    arch = (1, 4, 7, 5, True)
    for bad, pattern in ((labels.clone().fill_(5), r"^targets: labels must be in 0\.\.4"),
                         (labels - 1, r"^targets: labels must be in 0\.\.4"),
                         (labels.float(), r"^targets: cross_entropy needs integer class labels"),
                         (labels[:-1], r"^targets: cross_entropy needs integer class labels \[45\]")):
        with pytest.raises(NegdError, match=pattern) as err:
            kernels.mlp_data(arch, spec.n_params, x, bad, torch.float32, loss="cross_entropy")
        assert "\n" not in str(err.value)
    with pytest.raises(NegdError, match=r"^model: has 5 outputs"):
        MLPLoss(spec, x, labels + 3, loss="cross_entropy", backend="c")
    with pytest.raises(NegdError, match=r"^loss: "):
        kernels.mlp_data(arch, spec.n_params, x, labels, torch.float32, loss="hinge")
    with pytest.raises(NegdError, match=r"^activation: "):
        kernels.mlp_data(arch, spec.n_params, x, labels, torch.float32, activation="elu")
