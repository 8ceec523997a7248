"""negd.losses.module: the fast MLP loss equals the generic module loss; chunking; shape errors."""

from __future__ import annotations

import pytest
import torch

from negd.losses.mlp import MLPLoss, mse
from negd.losses.models import MLPSpec, load_flat_params, paper_init
from negd.losses.module import ModuleLoss, loss_for
from negd.validation import NegdError

SPECS = {
    "shallow 1-30-1 no output bias": MLPSpec(depth=1, width=30, output_bias=False),
    "deep 8x32": MLPSpec(depth=8, width=32),
    "1-40-1": MLPSpec(depth=1, width=40),
}


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(-1, 1, 101)[:, None]
    return x, torch.sin(torch.pi * x)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_mlp_loss_equals_module_loss(name, data):
    spec = SPECS[name]
    x, y = data
    params = paper_init(spec.n_params, 0.3, seed=7, realizations=6)
    fast = MLPLoss(spec, x, y)(params)
    generic = ModuleLoss(spec.module(), x, y)(params)
    assert fast.shape == generic.shape == (6,)
    assert torch.allclose(fast, generic, rtol=1e-5, atol=1e-7)
    # Explicit per-row check against the plain module.
    model = spec.module()
    with torch.no_grad():
        row = ((load_flat_params(model, params[2])(x) - y) ** 2).mean()
    assert fast.dtype == generic.dtype == torch.float64  # losses reduce in float64
    assert torch.allclose(fast[2], row.double(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_chunking_does_not_change_results(name, data):
    spec = SPECS[name]
    x, y = data
    params = paper_init(spec.n_params, 0.3, seed=8, realizations=10)
    whole = MLPLoss(spec, x, y, chunk_size=64)(params)
    assert torch.allclose(MLPLoss(spec, x, y, chunk_size=3)(params), whole, rtol=1e-6, atol=0)
    generic = ModuleLoss(spec.module(), x, y, chunk_size=64)(params)
    assert torch.allclose(ModuleLoss(spec.module(), x, y, chunk_size=4)(params), generic,
                          rtol=1e-6, atol=0)


def test_loss_for_picks_the_fast_path(data):
    x, y = data
    spec = SPECS["1-40-1"]
    assert isinstance(loss_for(spec.module(), x, y), MLPLoss)
    other = torch.nn.Sequential(torch.nn.Linear(1, 3), torch.nn.Sigmoid(), torch.nn.Linear(3, 1))
    assert isinstance(loss_for(other, x, y), ModuleLoss)
    assert isinstance(MLPLoss.from_module(spec.module(), x, y), MLPLoss)
    with pytest.raises(NegdError, match="model"):
        MLPLoss.from_module(other, x, y)


def test_float64_parameters_give_float64_losses(data):
    x, y = data
    spec = SPECS["1-40-1"]
    params = paper_init(spec.n_params, 0.3, seed=1, realizations=2).double()
    loss = MLPLoss(spec, x, y)(params)
    assert loss.dtype == torch.float64
    assert torch.allclose(loss, MLPLoss(spec, x.double(), y.double())(params), rtol=1e-12)


def test_mse_reduces_all_but_the_first_dimension():
    pred = torch.zeros(3, 4, 2)
    target = torch.ones(4, 2)
    assert torch.equal(mse(pred, target), torch.ones(3))


def test_wrong_shapes_raise_negd_error(data):
    x, y = data
    spec = SPECS["1-40-1"]
    loss = MLPLoss(spec, x, y)
    for bad in (torch.zeros(spec.n_params), torch.zeros(2, spec.n_params + 1), torch.zeros(1, 2, 3)):
        with pytest.raises(NegdError, match="params"):
            loss(bad)
        with pytest.raises(NegdError, match="params"):
            ModuleLoss(spec.module(), x, y)(bad)
    with pytest.raises(NegdError, match="inputs"):
        MLPLoss(spec, x[:, 0], y)
    with pytest.raises(NegdError, match="targets"):
        MLPLoss(spec, x, y[:-1])
    with pytest.raises(NegdError, match="backend"):
        MLPLoss(spec, x, y, backend="cuda")


@pytest.mark.parametrize("cls", [MLPLoss, ModuleLoss])
def test_bad_chunk_size_raises_negd_error(cls, data):
    x, y = data
    spec = SPECS["1-40-1"]
    model_or_spec = spec if cls is MLPLoss else spec.module()
    for bad in (0, -3, 2.5):
        with pytest.raises(NegdError, match="chunk_size"):
            cls(model_or_spec, x, y, chunk_size=bad)


@pytest.mark.parametrize("layer", [torch.nn.Dropout(0.1), torch.nn.BatchNorm1d(4)])
def test_module_loss_refuses_training_mode_dropout_and_batchnorm(layer, data):
    """Issue 11, defect 8: Dropout or BatchNorm gave raw vmap errors; eval mode works."""
    x, y = data
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), layer, torch.nn.Linear(4, 1))
    with pytest.raises(NegdError, match=rf"model: {type(layer).__name__} layer '1' is in training mode"):
        ModuleLoss(model, x, y)
    loss = ModuleLoss(model.eval(), x, y)
    assert loss(torch.zeros(3, loss.n_params)).shape == (3,)


# --------------------------------------------------------------------------- classifiers (issue 10)
def _classification(p=53, features=6, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p, features, generator=g), torch.randint(0, classes, (p,), generator=g)


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "identity"])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_mlp_cross_entropy_equals_the_module(activation, backend):
    x, y = _classification()
    spec = MLPSpec(depth=2, width=9, in_features=6, out_features=4, activation=activation)
    params = paper_init(spec.n_params, 0.5, seed=3, realizations=5)
    loss = MLPLoss(spec, x, y, loss="cross_entropy", backend=backend)
    assert loss.backend == backend  # the kernel covers every activation with cross-entropy
    got = loss(params)
    assert got.dtype == torch.float64 and got.shape == (5,)
    generic = ModuleLoss(spec.module(), x, y, loss="cross_entropy")(params)
    assert torch.allclose(got, generic, rtol=2e-6, atol=0)
    model = spec.module()
    for r in (0, 3):
        load_flat_params(model, params[r])
        with torch.no_grad():
            assert torch.allclose(got[r], torch.nn.functional.cross_entropy(model(x), y).double(), rtol=2e-6)


@pytest.mark.parametrize("activation", ["relu", "gelu", "identity"])
def test_non_tanh_mlps_take_the_kernel(activation, data):
    from negd import kernels
    from negd.engine import fused_step_fn
    from negd.rules import Neuroevolution

    x, y = data
    spec = MLPSpec(depth=1, width=8, activation=activation)
    loss = MLPLoss(spec, x, y)
    params = paper_init(spec.n_params, 0.3, seed=2, realizations=3)
    generic = ModuleLoss(spec.module(), x, y)(params)
    assert torch.allclose(loss(params), generic, rtol=1e-5, atol=1e-7)
    if not kernels.available():
        pytest.skip("C kernels unavailable")
    rule = Neuroevolution(0.01)
    assert fused_step_fn(rule, rule.init(params, loss), loss) is not None  # the fused kernel runs it
    assert torch.allclose(MLPLoss(spec, x, y, backend="c")(params), generic, rtol=1e-5, atol=1e-7)


def test_cross_entropy_gradients_use_torch():
    from negd.losses.base import value_and_grad

    x, y = _classification()
    spec = MLPSpec(depth=1, width=5, in_features=6, out_features=4)
    params = paper_init(spec.n_params, 0.5, seed=4, realizations=2)
    loss, grad = value_and_grad(MLPLoss(spec, x, y, loss="cross_entropy"), params)
    _, ref = value_and_grad(ModuleLoss(spec.module(), x, y, loss="cross_entropy"), params)
    assert torch.allclose(grad, ref, rtol=1e-4, atol=1e-6)


def test_loss_for_flattens_images_for_the_mlp_path():
    g = torch.Generator().manual_seed(1)
    images, y = torch.rand(20, 1, 4, 4, generator=g), torch.randint(0, 3, (20,), generator=g)
    nn = torch.nn
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    fast = loss_for(model, images, y, loss="cross_entropy")
    assert isinstance(fast, MLPLoss) and fast.spec.activation == "relu"
    params = paper_init(fast.n_params, 0.5, seed=5, realizations=3)
    assert torch.allclose(fast(params), ModuleLoss(model, images, y, loss="cross_entropy")(params), rtol=2e-6)


def test_classifier_input_errors_name_the_argument():
    x, y = _classification(classes=10)
    spec = MLPSpec(depth=1, width=5, in_features=6, out_features=4)
    with pytest.raises(NegdError, match="^model: has 4 outputs"):
        MLPLoss(spec, x, y, loss="cross_entropy")  # labels up to 9, 4 outputs
    with pytest.raises(NegdError, match="^model: has 4 outputs"):
        ModuleLoss(spec.module(), x, y, loss="cross_entropy")
    with pytest.raises(NegdError, match="^targets"):
        MLPLoss(spec, x, y.float(), loss="cross_entropy")
    with pytest.raises(NegdError, match="^targets"):
        MLPLoss(spec, x, y[:-1] % 4, loss="cross_entropy")
    with pytest.raises(NegdError, match="^inputs"):
        ModuleLoss(spec.module(), x[:, :5], y % 4, loss="cross_entropy")  # the model wants 6 features
    with pytest.raises(NegdError, match="^inputs"):
        MLPLoss(spec, x[:, :5], y % 4, loss="cross_entropy")
    with pytest.raises(NegdError, match="^targets"):
        ModuleLoss(spec.module(), x, torch.zeros(len(x), 3))  # mse: the model has 4 outputs
    with pytest.raises(NegdError, match="^loss"):
        MLPLoss(spec, x, y % 4, loss="hinge")
    with pytest.raises(NegdError, match="^activation"):
        MLPSpec(activation="swish")
