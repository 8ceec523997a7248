"""negd.losses.minibatch and the minibatch rules: counter-based batches, full-batch limits, stale beta_eff."""

from __future__ import annotations

import math

import pytest
import torch

from negd.losses.minibatch import MinibatchLoss, batch_indices
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import (
    MinibatchGradient,
    MinibatchNeuroevolution,
    Neuroevolution,
    NormalizedGradientDescent,
)
from negd.theory.minibatch import measured_beta_eff, stale_beta_eff, stale_drift
from negd.twins.constructors import minibatch_twin
from negd.validation import NegdError

SPEC = MLPSpec(depth=1, width=6)


@pytest.fixture(scope="module")
def data():
    x = torch.linspace(-1, 1, 40)[:, None]
    return x, torch.sin(torch.pi * x)


def test_batches_are_distinct_points_independent_of_r_and_chunking():
    whole = batch_indices(7, torch.arange(6), 3, 50, 10)
    assert whole.shape == (6, 10) and int(whole.min()) >= 0 and int(whole.max()) < 50
    assert all(len(set(row.tolist())) == 10 for row in whole)
    assert torch.equal(batch_indices(7, torch.tensor([4, 2]), 3, 50, 10), whole[[4, 2]])
    assert not torch.equal(batch_indices(7, torch.arange(6), 4, 50, 10), whole)  # new step, new batch
    assert not torch.equal(batch_indices(8, torch.arange(6), 3, 50, 10), whole)  # new seed
    assert sorted(batch_indices(0, torch.arange(2), 0, 9, 9)[0].tolist()) == list(range(9))


def test_every_point_is_drawn_equally_often():
    # 4000 batches of 5 from 20 points: each point's count ~ Binomial(4000, 1/4); chi^2 with 19 dof.
    idx = batch_indices(1, torch.arange(4000), 0, 20, 5)
    counts = torch.bincount(idx.reshape(-1), minlength=20).double()
    expected = 4000 * 5 / 20
    chi2 = (((counts - expected) ** 2) / (expected * (1 - 5 / 20))).sum().item()
    assert chi2 < 19 + 4 * math.sqrt(2 * 19)  # mean + 4 SD of chi^2_19


def test_full_batch_equals_the_data_loss(data):
    loss = MinibatchLoss.for_mlp(SPEC, *data, batch_size=40)
    params = paper_init(SPEC.n_params, 0.5, seed=0, realizations=3)
    per_step = loss.on_batches(0, torch.arange(3), 5)(params)
    assert torch.allclose(per_step, MLPLoss(SPEC, *data, backend="torch")(params), rtol=1e-5)
    assert torch.allclose(loss(params), per_step, rtol=1e-5)


@pytest.mark.parametrize("mode", ["paired", "fresh", "stale"])
def test_full_batch_loss_gives_the_paper_rule(mode, data):
    loss_fn = MLPLoss(SPEC, *data)
    start = paper_init(SPEC.n_params, 0.5, seed=1, realizations=5)
    a, b = MinibatchNeuroevolution(0.05, mode=mode), Neuroevolution(0.05)
    sa, sb = a.init(start, loss_fn, seed=2), b.init(start, loss_fn, seed=2)
    for _ in range(30):
        sa, sb = a.step(sa, loss_fn), b.step(sb, loss_fn)
    assert torch.equal(sa.params, sb.params) and torch.equal(sa.loss, sb.loss)


def test_paired_compares_on_the_step_batch_and_twin_uses_the_same_batches(data):
    loss = MinibatchLoss.for_mlp(SPEC, *data, batch_size=8)
    start = paper_init(SPEC.n_params, 0.5, seed=1, realizations=4)
    rule = MinibatchNeuroevolution(0.05, mode="paired")
    state = rule.step(rule.init(start, loss, seed=3), loss)
    on_batch = loss.on_batches(3, torch.arange(4), 0)
    assert torch.allclose(state.loss, on_batch(state.params), rtol=1e-6)
    twin = minibatch_twin(rule)
    assert isinstance(twin.base, NormalizedGradientDescent)
    assert twin.base.alpha == pytest.approx(0.05 / math.sqrt(2 * math.pi))
    moved = twin.step(twin.init(start, loss, seed=3), loss)
    expected = NormalizedGradientDescent(alpha=twin.base.alpha)
    ref = expected.step(expected.init(start, on_batch), on_batch)  # SGD on step 0's batches
    assert torch.allclose(moved.params, ref.params, atol=1e-7)


def test_stale_one_step_drift_gives_beta_eff():
    # Linear loss g.x plus batch noise: each of P = 400 points carries an offset n_j; the batch loss
    # adds the mean offset of its B = 40 points. One stale step from a loss stored on batch 0 to the
    # proposal on batch 1 (all R realizations at the same x): drift along -g vs a/sqrt(2 pi (1+a^2)),
    # a = sigma |g|/s, s the spread of the difference of two batch means; 4 SE.
    n, p, b, r, sigma = 10, 400, 40, 40_000, 0.1
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(n, generator=gen, dtype=torch.float64)
    g = 0.5 * g / g.norm()
    offsets = torch.randn(p, 1, generator=gen, dtype=torch.float64)
    loss = MinibatchLoss(lambda params, x, y: params @ g + y.mean(dim=(1, 2)), offsets, offsets, b)
    rule = MinibatchNeuroevolution(sigma, mode="stale")
    state = rule.init(torch.zeros(n, dtype=torch.float64), loss, seed=5, realizations=r)
    state = state.replace(step=1)  # the stored loss is on step 0's batch; compare on step 1's
    d = rule.step(state, loss).params @ (g / g.norm())
    # s from the data: the same two batches of every realization.
    means = [offsets[loss.indices(5, torch.arange(r), t)].mean(dim=(1, 2)) for t in (0, 1)]
    s = (means[1] - means[0]).std().item()
    a = sigma * 0.5 / s
    _se = d.std().item() / math.sqrt(r)
    assert abs(-d.mean().item() - sigma * stale_drift(a)) <= 4 * _se
    beta = measured_beta_eff(-d.mean().item(), sigma, 0.5)
    assert abs(beta - stale_beta_eff(s) / math.sqrt(1 + a * a)) <= 4 * measured_beta_eff(_se, sigma, 0.5)


def test_bad_input(data):
    with pytest.raises(NegdError, match="batch_size"):
        MinibatchLoss.for_mlp(SPEC, *data, batch_size=41)
    with pytest.raises(NegdError, match="batch_size"):
        MinibatchLoss.for_mlp(SPEC, *data, batch_size=0)
    with pytest.raises(NegdError, match="batch_size"):
        batch_indices(0, torch.arange(2), 0, 10, 11)
    with pytest.raises(NegdError, match="targets"):
        MinibatchLoss.for_mlp(SPEC, data[0], data[1][:-1], batch_size=4)
    loss = MinibatchLoss.for_mlp(SPEC, *data, batch_size=4)
    with pytest.raises(NegdError, match="params"):
        loss.on_batches(0, torch.arange(3), 0)(torch.zeros(2, SPEC.n_params))
    with pytest.raises(NegdError, match="mode"):
        MinibatchNeuroevolution(0.1, mode="hot")
    with pytest.raises(NegdError, match="base"):
        MinibatchGradient(Neuroevolution(0.1))
    with pytest.raises(NegdError, match="s:"):
        stale_beta_eff(0.0)


@pytest.mark.parametrize("make", [lambda: MinibatchNeuroevolution(0.05, mode="stale"),
                                  lambda: MinibatchNeuroevolution(0.05, mode="fresh"),
                                  lambda: MinibatchNeuroevolution(0.05, mode="paired"),
                                  lambda: minibatch_twin(MinibatchNeuroevolution(0.05))])
def test_chunked_minibatch_runs_equal_the_whole_ensemble(make, data):
    loss = MinibatchLoss.for_mlp(SPEC, *data, batch_size=8)
    rule = make()
    whole = rule.init(paper_init(SPEC.n_params, 0.5, seed=1, realizations=6), loss, seed=4)
    parts = [whole.chunk(0, 2), whole.chunk(2, 6)]
    for _ in range(5):
        whole = rule.step(whole, loss)
        parts = [rule.step(p, loss) for p in parts]
    joined = type(whole).concat(parts)
    assert torch.allclose(joined.params, whole.params, rtol=0, atol=1e-7)
    assert torch.equal(joined.accepted, whole.accepted)


def test_paired_mode_follows_its_sgd_twin(data):
    # 1-6-1 net, B = 8 of 40 points, 300 realizations, sigma = 0.01, path length 0.25: the ensemble
    # mean is within 4 SE of the normalized-SGD twin run on the same batches (Delta_c of the paired
    # differences; the gap's shrinking with sigma is measured in scripts/measure_minibatch.py).
    import numpy as np

    from negd.analysis.delta import delta_from_samples
    from negd.engine import advance

    loss = MinibatchLoss.for_mlp(SPEC, *data, batch_size=8)
    x0 = paper_init(SPEC.n_params, 0.5, seed=1)
    rule = MinibatchNeuroevolution(0.01)
    twin = minibatch_twin(rule)
    steps = round(0.25 * math.sqrt(2 * math.pi) / 0.01)
    ne = advance(rule, rule.init(x0, loss, seed=1, realizations=300), loss, steps)
    sgd = advance(twin, twin.init(x0, loss, seed=1, realizations=300), loss, steps)
    d = (ne.params - sgd.params).double().numpy()
    stats = delta_from_samples(np.zeros(d.shape[1]), d)
    change = float(((sgd.params.double().mean(0) - x0.double()) ** 2).mean())
    assert abs(stats.corrected) <= 4 * stats.corrected_se
    assert stats.corrected_se < 0.01 * change  # the test can see a gap of 4% of the displacement
