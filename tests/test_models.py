"""negd.losses.models: parameter counts, flat order, module round trips and initializations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from negd.losses.models import MLPSpec, flat_params, load_flat_params, paper_init, torch_default_init
from negd.validation import NegdError


@pytest.mark.parametrize("spec, n", [
    (MLPSpec(depth=1, width=30, output_bias=False), 90),  # the paper's shallow net
    (MLPSpec(depth=8, width=32), 7489),  # the paper's deep net
    (MLPSpec(depth=1, width=40), 121),  # the authors' reference net
    (MLPSpec(depth=2, width=3, in_features=2, out_features=4), 2 * 3 + 3 + 3 * 3 + 3 + 3 * 4 + 4),
])
def test_n_params(spec, n):
    assert spec.n_params == n
    assert sum(p.numel() for p in spec.module().parameters()) == n
    slices = spec.slices()
    assert slices[0][0].start == 0
    last_w, last_b = slices[-1]
    assert (last_b or last_w).stop == n


def test_flat_order_is_named_parameters_order():
    spec = MLPSpec(depth=2, width=5, in_features=3, out_features=2, output_bias=False)
    model = spec.module()
    flat = flat_params(model)
    named = dict(model.named_parameters())
    linears = [m for m in model if isinstance(m, nn.Linear)]
    for k, (lin, (ws, bs)) in enumerate(zip(linears, spec.slices())):
        idx = 2 * k
        assert torch.equal(flat[ws], named[f"{idx}.weight"].detach().reshape(-1))
        assert torch.equal(flat[ws].reshape(lin.out_features, lin.in_features), lin.weight.detach())
        if bs is None:
            assert lin.bias is None
        else:
            assert torch.equal(flat[bs], named[f"{idx}.bias"].detach())
    assert torch.equal(flat, torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()]))


@pytest.mark.parametrize("spec", [MLPSpec(depth=1, width=30, output_bias=False), MLPSpec(depth=3, width=7),
                                  MLPSpec(depth=1, width=4, in_features=2, out_features=3)])
def test_forward_equals_module(spec):
    model = spec.module().double()
    x = torch.randn(11, spec.in_features, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = flat_params(model)[None]
    out = spec.forward(params, x)
    assert out.shape == (1, 11, spec.out_features)
    assert torch.allclose(out[0], model(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", [MLPSpec(depth=1, width=30, output_bias=False), MLPSpec(depth=8, width=32),
                                  MLPSpec(depth=2, width=4, in_features=3, out_features=2)])
def test_from_module_round_trip(spec):
    assert MLPSpec.from_module(spec.module()) == spec


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Linear(1, 4), nn.Sigmoid(), nn.Linear(4, 1)),
    nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1)),
    nn.Sequential(nn.Linear(1, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 1)),
    nn.Sequential(nn.Flatten(0), nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1)),
    nn.Sequential(nn.Linear(1, 4), nn.Tanh()),
    nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(5, 1)),
    nn.Sequential(nn.Linear(1, 4, bias=False), nn.Tanh(), nn.Linear(4, 1)),
    nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)),
    nn.Linear(1, 1),
])
def test_from_module_rejects_other_architectures(model):
    assert MLPSpec.from_module(model) is None


def test_load_flat_params_round_trip_and_shape_check():
    model = MLPSpec(depth=2, width=6).module()
    flat = torch.arange(MLPSpec(depth=2, width=6).n_params, dtype=torch.float32)
    assert torch.equal(flat_params(load_flat_params(model, flat)), flat)
    with pytest.raises(NegdError, match="flat"):
        load_flat_params(model, flat[:-1])


@pytest.mark.parametrize("kwargs, field", [({"depth": 0}, "depth"), ({"width": 2.5}, "width"),
                                           ({"in_features": -1}, "in_features"),
                                           ({"out_features": True}, "out_features")])
def test_bad_spec_raises(kwargs, field):
    with pytest.raises(NegdError, match=field):
        MLPSpec(**kwargs)


def test_paper_init_reproducible_and_row_independent_of_r():
    a = paper_init(90, 0.1, seed=4, realizations=10)
    assert a.shape == (10, 90) and torch.equal(a, paper_init(90, 0.1, seed=4, realizations=10))
    assert torch.equal(paper_init(90, 0.1, seed=4, realizations=3), a[:3])
    assert not torch.equal(paper_init(90, 0.1, seed=5, realizations=3), a[:3])
    shared = paper_init(90, 0.1, seed=4)
    assert shared.shape == (90,)
    # The draws have standard deviation sigma0 (900 values: SE of the std 0.1/sqrt(1800), 4 SE).
    assert abs(a.std().item() - 0.1) < 4 * 0.1 / (2 * 900) ** 0.5
    with pytest.raises(NegdError, match="sigma0"):
        paper_init(90, 0.0)
    with pytest.raises(NegdError, match="realizations"):
        paper_init(90, 0.1, realizations=0)


def test_torch_default_init_reproducible_and_row_independent_of_r():
    spec = MLPSpec(depth=1, width=30, output_bias=False)
    state = torch.random.get_rng_state()
    a = torch_default_init(spec, seed=2, realizations=6)
    assert torch.equal(torch.random.get_rng_state(), state)  # global generator untouched
    assert a.shape == (6, 90) and torch.equal(a, torch_default_init(spec, seed=2, realizations=6))
    assert torch.equal(torch_default_init(spec, seed=2, realizations=2), a[:2])
    assert not torch.equal(a[0], a[1])
    shared = torch_default_init(spec, seed=2)
    assert shared.shape == (90,) and torch.equal(shared, torch_default_init(spec, seed=2))
    # Kaiming-uniform bound of the first layer (fan_in = 1) is 1: weights lie in [-1, 1].
    assert bool((a[:, spec.slices()[0][0]].abs() <= 1).all())


@pytest.mark.parametrize("activation", ["tanh", "relu", "gelu", "identity"])
@pytest.mark.parametrize("output_bias", [True, False])
def test_feature_major_forward_equals_row_major(activation, output_bias):
    spec = MLPSpec(depth=2, width=7, in_features=5, out_features=3, output_bias=output_bias,
                   activation=activation)
    params = paper_init(spec.n_params, 0.5, seed=1, realizations=4)
    x = torch.randn(11, 5, generator=torch.Generator().manual_seed(2))
    rows = spec.forward(params, x)  # [R, P, out]
    assert torch.allclose(spec.forward_t(params, x.t()), rows.transpose(1, 2), rtol=1e-5, atol=1e-6)
    model = spec.module()
    assert MLPSpec.from_module(model) == spec
    assert MLPSpec.from_module(nn.Sequential(nn.Flatten(), *model)) == spec
    load_flat_params(model, params[1])
    with torch.no_grad():
        assert torch.allclose(rows[1], model(x), rtol=1e-5, atol=1e-6)
