"""The fused C kernel (negd.kernels, dispatched by negd.engine.fused_step_fn) against the torch path."""

from __future__ import annotations

import math
import re

import pytest
import torch

from negd import kernels, rng
from negd.engine import advance_counted, fused_step_fn
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import GradientDescent, Neuroevolution
from negd.tasks import get_task
from negd.validation import NegdError

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason="C kernels unavailable (no gcc, failed build, NEGD_DISABLE_KERNELS)")

SHALLOW = MLPSpec(1, 30, output_bias=False)
SMALL = MLPSpec(2, 8)


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def _fused(rule, state, loss_fn, steps):
    """The kernel's (state, accepted counts) after ``steps`` steps; fails if the kernel does not fit."""
    run = fused_step_fn(rule, state, loss_fn)
    assert run is not None, "the fused kernel should fit this rule, loss and state"
    out, tally = run(state, steps)
    return out, tally.accepted


def _same_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a == b).all(dim=1)


@pytest.mark.parametrize("seed", [0, 1, 987654321987, 2**64 - 1])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 90, 1031])
def test_normal_bit_identical_to_rng(seed, n):
    realizations = torch.tensor([0, 1, 7, 123456, 2**33 + 5, 2**44 - 1])
    for step in (0, 1, 99, 2**32 + 3, 2**44 - 1):
        expected = rng.normal_reference(seed, realizations, step, n)
        assert _same_bits(kernels.normal(seed, realizations, step, n), expected)


def test_normal_bit_identical_many_realizations():
    realizations = torch.arange(3000)
    assert _same_bits(kernels.normal(5, realizations, 17, 64), rng.normal_reference(5, realizations, 17, 64))


def test_normal_per_row_steps_and_streams():
    realizations = torch.tensor([3, 2**32 + 7, 11])
    steps = torch.tensor([0, 2**32 + 5, 77])
    for stream in (rng.STREAM_MUTATION, rng.STREAM_LANGEVIN, rng.STREAM_LIMIT - 1):
        expected = rng.normal_reference(9, realizations, steps, 45, stream)
        assert _same_bits(kernels.normal(9, realizations, steps, 45, stream), expected)
    assert torch.equal(kernels.uniform(9, realizations, steps), rng.uniform_reference(9, realizations, steps))


def test_normal_rows_independent_of_threads():
    # 300 x 4000 normals >= 2^20: the kernel splits rows over threads; each row is computed alone
    realizations = torch.arange(300) + 2**32 - 150
    threads = torch.get_num_threads()
    whole = kernels.normal(4, realizations, 2**32 + 1, 4000)
    try:
        torch.set_num_threads(1)
        single = kernels.normal(4, realizations, 2**32 + 1, 4000)
    finally:
        torch.set_num_threads(threads)
    assert _same_bits(whole, single)
    assert _same_bits(whole[::37], rng.normal_reference(4, realizations[::37], 2**32 + 1, 4000))


@pytest.mark.parametrize("seed", [0, 42, 2**63 + 11])
def test_uniform_identical_to_rng(seed):
    realizations = torch.cat([torch.arange(500) * 7919, torch.tensor([2**32 + 7, 2**44 - 1])])
    for step in (0, 3, 2**32 + 1, 2**44 - 1):
        assert torch.equal(kernels.uniform(seed, realizations, step),
                           rng.uniform_reference(seed, realizations, step))


@pytest.mark.parametrize("name, limit, call", [
    ("realization", "2^44", lambda: kernels.normal(0, torch.tensor([0, -1]), 0, 4)),
    ("realization", "2^44", lambda: kernels.normal(0, torch.tensor([2**44]), 0, 4)),
    ("step", "2^44", lambda: kernels.normal(0, torch.tensor([0]), 2**44, 4)),
    ("step", "2^44", lambda: kernels.normal(0, torch.tensor([0, 1]), torch.tensor([0, -3]), 4)),
    ("stream", "2^8", lambda: kernels.normal(0, torch.tensor([0]), 0, 4, stream=256)),
    ("realization", "2^44", lambda: kernels.uniform(0, torch.tensor([2**44 + 1]), 0)),
    ("step", "2^44", lambda: kernels.uniform(0, torch.tensor([1]), -1)),
])
def test_counters_out_of_range_raise(name, limit, call):
    with pytest.raises(NegdError, match=rf"^{name}: must be an integer in \[0, {re.escape(limit)}\)"):
        call()


def test_tanh_accuracy_and_special_values():
    x = torch.linspace(-12, 12, 1_000_001)
    err = (kernels.tanh(x).double() - torch.tanh(x.double())).abs().max().item()
    assert err < 5e-7  # about 4 ulp of float32 near |tanh| = 1 (measured 2.7e-7)
    special = kernels.tanh(torch.tensor([0.0, float("inf"), -float("inf"), float("nan")]))
    assert special[0] == 0 and torch.isnan(special[3])
    assert abs(special[1] - 1) < 5e-7 and abs(special[2] + 1) < 5e-7


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spec", [SHALLOW, MLPSpec(1, 256), SMALL, MLPSpec(8, 32),
                                  MLPSpec(2, 5, in_features=3, out_features=2)])
def test_loss_agrees_with_torch(spec, dtype):
    gen = torch.Generator().manual_seed(3)
    inputs = torch.rand(37 if spec.in_features > 1 else 1001, spec.in_features, generator=gen) * 2 - 1
    targets = torch.sin(3 * inputs[:, :1]).expand(-1, spec.out_features).contiguous()
    params = (torch.randn(40, spec.n_params, generator=gen) * 0.5).to(dtype)
    reference = MLPLoss(spec, inputs, targets, backend="torch")(params)
    fused = MLPLoss(spec, inputs, targets, backend="c")(params)
    assert fused.dtype == reference.dtype == torch.float64  # losses are float64 for any parameter dtype
    # float32 forward (about 1e-7 per operation); float64 forward with a tanh within 1 ulp
    tolerance = 3e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(fused, reference, rtol=tolerance, atol=0)


def test_float64_tanh_is_accurate():
    x = torch.cat([torch.linspace(-30, 30, 200_001, dtype=torch.float64),
                   torch.tensor([0.0, -0.0, 0.625, -0.625, 1e-300, 22.0, 23.0], dtype=torch.float64)])
    y = kernels.tanh(x)
    assert y.dtype == torch.float64
    rel = ((y - torch.tanh(x)).abs() / torch.tanh(x).abs().clamp_min(1e-300)).max().item()
    assert rel < 5e-16, rel  # Cephes rational form below 0.625, exp-based above: ~1 ulp
    special = kernels.tanh(torch.tensor([float("inf"), -float("inf"), float("nan")], dtype=torch.float64))
    assert special[0] == 1 and special[1] == -1 and math.isnan(special[2])


def _problem(spec: MLPSpec, backend: str) -> MLPLoss:
    task = get_task("sin2pi", 200)
    return MLPLoss(spec, task.inputs, task.targets, backend=backend)


def _reference(rule, state, loss_fn, steps):
    counts = torch.zeros(state.n_realizations, dtype=torch.int64)
    for _ in range(steps):
        state = rule.step(state, loss_fn)
        counts += state.accepted
    return state, counts


# Relative difference of the kernel's and torch's loss of the same parameters (measured: 1.2e-7 in
# float32, 6.8e-16 in float64): both sum the per-point squared errors in float64, but the forward pass
# runs in the parameters' dtype, the kernel with explicit FMAs in its own order, torch in its GEMM's,
# so the outputs differ in their last bit. An accept decision can differ only where |dU| is below that.
LOSS_RTOL = {torch.float32: 3e-7, torch.float64: 5e-15}


def _near_tie_at_first_disagreement(rule, state, fused_loss, torch_loss, steps, dtype):
    """Replay one step at a time: the first step where kernel and torch decide differently must be a
    near tie, |dU| <= LOSS_RTOL * U (returns its |dU| / U), else the test fails."""
    for _ in range(steps):
        fused, _ = _fused(rule, state, fused_loss, 1)
        ref = rule.step(state, torch_loss)
        if not torch.equal(fused.accepted, ref.accepted):
            differ = fused.accepted != ref.accepted
            d_u = torch_loss(state.params + rule.mutation(state)) - state.loss
            relative = (d_u[differ].abs() / state.loss[differ]).max().item()
            assert relative <= 2 * LOSS_RTOL[dtype], f"decisions differ at |dU|/U = {relative:.2e}"
            return relative
        state = ref
    raise AssertionError("the fused run differs but no single step does")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("spec", [SHALLOW, SMALL], ids=["shallow", "2x8"])
@pytest.mark.parametrize("beta", [math.inf, 300.0])
def test_fused_matches_reference_trajectories(spec, beta, dtype):
    """The noise is bit-identical and the acceptance test the same float64 arithmetic: every
    realization's 50-step trajectory is bit for bit the reference's, except after a decision on a
    near tie that the two forward passes' rounding cannot resolve (LOSS_RTOL; none in float64)."""
    rule = Neuroevolution(0.02, beta)
    start = paper_init(spec.n_params, 0.5, seed=4).to(dtype)
    fused_loss, torch_loss = _problem(spec, "c"), _problem(spec, "torch")
    state = rule.init(start, torch_loss, realizations=64, seed=11)
    assert fused_step_fn(rule, state, torch_loss) is None  # torch backend: no kernel
    fused, fused_counts = _fused(rule, state, fused_loss, 50)
    ref, ref_counts = _reference(rule, state, torch_loss, 50)
    assert fused.step == ref.step == 50 and fused.params.dtype == dtype
    same = (fused.params == ref.params).all(dim=1) & torch.equal(fused.params.isnan(), ref.params.isnan())
    if dtype == torch.float64:
        assert bool(same.all()), f"{int((~same).sum())} of 64 float64 trajectories differ"
    elif not bool(same.all()):  # float32: only after a certified near tie
        rows = (~same).nonzero().flatten().tolist()
        _near_tie_at_first_disagreement(rule, state.chunk(rows[0], rows[0] + 1), fused_loss, torch_loss, 50,
                                        dtype)
    assert _same_bits(fused.params[same], ref.params[same])
    assert torch.equal(fused_counts[same], ref_counts[same])
    assert torch.equal(fused.accepted[same], ref.accepted[same])
    assert torch.equal(fused.tied[same], ref.tied[same])
    torch.testing.assert_close(fused.loss[same], ref.loss[same], rtol=LOSS_RTOL[dtype], atol=0)
    assert 0 < fused_counts.sum() < 64 * 50


@pytest.mark.parametrize("beta", [math.inf, 300.0])
def test_fused_counters_past_2_to_the_32(monkeypatch, beta):
    # Steps 2^32 - 3 .. 2^32 + 2 and realization ids past 2^32: the fused loop must build the
    # counters of negd.rng (high bits in word 3) at every step, as the torch loop does.
    monkeypatch.setattr(rng, "normal", rng.normal_reference)
    monkeypatch.setattr(rng, "uniform", rng.uniform_reference)
    spec = SHALLOW
    rule = Neuroevolution(0.02, beta)
    realization = torch.tensor([5, 2**32 + 5, 2**33, 2**44 - 1] * 4)
    # float64: the two forward passes agree to 1e-15 (LOSS_RTOL), so every decision is the same
    state = rule.init(paper_init(spec.n_params, 0.5, seed=4).double(), _problem(spec, "torch"),
                      realizations=16, realization=realization, seed=3)
    state = state.replace(step=2**32 - 3)
    fused, fused_counts = _fused(rule, state, _problem(spec, "c"), 5)
    ref, ref_counts = _reference(rule, state, _problem(spec, "torch"), 5)
    assert fused.step == ref.step == 2**32 + 2
    assert _same_bits(fused.params, ref.params)
    assert torch.equal(fused_counts, ref_counts) and fused_counts.sum() > 0
    # realizations 5 and 2^32 + 5 see different numbers (they aliased before the high bits were used)
    assert not torch.equal(fused.params[0], fused.params[1])


def test_fused_counters_out_of_range_raise():
    rule = Neuroevolution(0.02)
    loss_fn = _problem(SHALLOW, "c")
    state = rule.init(paper_init(SHALLOW.n_params, 0.5), loss_fn, realizations=2)
    run = fused_step_fn(rule, state, loss_fn)
    end, _ = run(state.replace(step=2**44 - 2), 2)  # the last step drawn is 2^44 - 1
    assert end.step == 2**44
    with pytest.raises(NegdError, match=r"^step: must be an integer in \[0, 2\^44\)"):
        run(state.replace(step=2**44 - 2), 3)
    with pytest.raises(NegdError, match=r"^realization: must be an integer in \[0, 2\^44\)"):
        run(state.replace(realization=torch.tensor([0, 2**44])), 1)


def test_per_parameter_sigma_matches_reference():
    spec = SMALL
    sigma = torch.linspace(0.005, 0.05, spec.n_params)
    rule = Neuroevolution(sigma, math.inf)
    for dtype in (torch.float32, torch.float64):
        state = rule.init(paper_init(spec.n_params, 0.5, seed=1).to(dtype), _problem(spec, "torch"),
                          realizations=16)
        fused, counts = _fused(rule, state, _problem(spec, "auto"), 20)
        ref, ref_counts = _reference(rule, state, _problem(spec, "torch"), 20)
        same = (fused.params == ref.params).all(dim=1)
        # float64: every decision the same; float32: a near tie could split one (LOSS_RTOL)
        assert bool(same.all()) if dtype == torch.float64 else same.float().mean() >= 15 / 16
        assert torch.equal(counts[same], ref_counts[same]) and 0 < counts.sum() < 16 * 20


def test_engine_uses_kernel_and_is_deterministic():
    rule = Neuroevolution(0.02, 100.0)
    loss_fn = _problem(SHALLOW, "auto")
    state = rule.init(paper_init(SHALLOW.n_params, 0.5, seed=2), loss_fn, realizations=8, seed=5)
    a, ca = advance_counted(rule, state, loss_fn, 30)
    b, cb = advance_counted(rule, state, loss_fn, 30)
    assert _same_bits(a.params, b.params) and torch.equal(ca, cb)
    # resuming is exact: 10 + 20 steps equal 30 steps
    c, cc1 = advance_counted(rule, state, loss_fn, 10)
    c, cc2 = advance_counted(rule, c, loss_fn, 20)
    assert _same_bits(c.params, a.params) and torch.equal(cc1 + cc2, ca) and c.step == 30


def test_independent_of_chunking_and_threads():
    rule = Neuroevolution(0.03, math.inf)
    loss_fn = _problem(SMALL, "c")
    state = rule.init(paper_init(SMALL.n_params, 0.5, seed=3), loss_fn, realizations=64, seed=9)
    whole, counts = _fused(rule, state, loss_fn, 25)
    parts = [_fused(rule, state.chunk(i, i + 16), loss_fn, 25) for i in range(0, 64, 16)]
    assert _same_bits(whole.params, torch.cat([p.params for p, _ in parts]))
    assert torch.equal(counts, torch.cat([c for _, c in parts]))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single, single_counts = _fused(rule, state, loss_fn, 25)
    finally:
        torch.set_num_threads(threads)
    assert _same_bits(whole.params, single.params) and _same_bits(whole.loss, single.loss)
    assert torch.equal(counts, single_counts)


@pytest.mark.parametrize("threads", [3, 7])
def test_independent_of_the_schedule(threads):
    # more threads than cores and an ensemble that does not divide evenly: the dynamic schedule hands
    # realizations to threads in a different order on every run; the numbers must not change
    rule = Neuroevolution(0.03, math.inf)
    loss_fn = _problem(SMALL, "c")
    state = rule.init(paper_init(SMALL.n_params, 0.5, seed=3), loss_fn, realizations=37, seed=9)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single, single_counts = _fused(rule, state, loss_fn, 15)
        torch.set_num_threads(threads)
        many, many_counts = _fused(rule, state, loss_fn, 15)
    finally:
        torch.set_num_threads(before)
    assert _same_bits(many.params, single.params) and _same_bits(many.loss, single.loss)
    assert torch.equal(many_counts, single_counts)


def test_non_finite_proposals_are_rejected():
    loss_fn = _problem(SHALLOW, "c")
    start = paper_init(SHALLOW.n_params, 0.5, seed=0)
    # sigma = 1e30: every proposal's outputs overflow, so its loss is inf and it is never taken
    rule = Neuroevolution(1e30, math.inf)
    state = rule.init(start, loss_fn, realizations=4)
    out, counts = _fused(rule, state, loss_fn, 5)
    assert counts.sum() == 0 and torch.equal(out.params, state.params) and torch.equal(out.loss, state.loss)
    # a non-finite current loss gives way to any finite proposal, at any beta
    for beta in (math.inf, 10.0):
        rule = Neuroevolution(0.01, beta)
        stuck = rule.init(start, loss_fn, realizations=4)
        stuck = stuck.replace(loss=torch.full((4,), float("nan")))
        out, counts = _fused(rule, stuck, loss_fn, 1)
        assert out.accepted.all() and torch.isfinite(out.loss).all()


def test_declines_what_it_cannot_run(monkeypatch):
    loss_fn = _problem(SHALLOW, "auto")
    rule = Neuroevolution(0.01)
    state = rule.init(paper_init(SHALLOW.n_params, 0.5), loss_fn, realizations=2)
    assert fused_step_fn(rule, state, loss_fn) is not None
    assert fused_step_fn(rule, state.replace(params=state.params.double()), loss_fn) is not None
    assert fused_step_fn(GradientDescent(0.1), state, loss_fn) is None
    assert fused_step_fn(rule, state.replace(params=state.params.half()), loss_fn) is None
    assert loss_fn.kernel_data(state.params.clone().requires_grad_(True)) is None  # autograd: torch path
    monkeypatch.setenv("NEGD_DISABLE_KERNELS", "1")
    assert fused_step_fn(rule, state, loss_fn) is None
    assert loss_fn.kernel_data(state.params) is None


def test_kernel_package_is_a_leaf():
    """negd.kernels computes on tensors: it imports no rule, state, loss or model module."""
    import ast
    from pathlib import Path

    folder = Path(kernels.__file__).parent
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                if name.startswith("negd") and not name.startswith(("negd.kernels", "negd.validation")):
                    raise AssertionError(f"{path.name} imports {name}")
