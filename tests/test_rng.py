"""negd.rng: Philox4x32-10 known answers, normal statistics, counter-based layout independence."""

from __future__ import annotations

import math

import pytest
import torch

from negd import rng
from negd.validation import NegdError


def _t(v: int) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.int64)


# Known-answer vectors of Random123 (kat_vectors): counter words, key words, expected output.
PHILOX_KATS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    # Digits of pi.
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("ctr, key, expected", PHILOX_KATS)
def test_philox_known_answers(ctr, key, expected):
    seed = key[0] | (key[1] << 32)
    out = rng.philox4x32(*(_t(c) for c in ctr), seed)
    assert tuple(int(o) for o in out) == expected


def test_philox_broadcasts_like_scalar_calls():
    c0 = torch.arange(5, dtype=torch.int64)
    batched = rng.philox4x32(c0, _t(7), _t(9), _t(1), 123)
    for i in range(5):
        single = rng.philox4x32(_t(i), _t(7), _t(9), _t(1), 123)
        assert [int(b[i]) for b in batched] == [int(s) for s in single]


@pytest.fixture(scope="module")
def many_normals() -> torch.Tensor:
    """4 x 10^5 normals (fixed seed) as float64 [R=100, n=4000]."""
    return rng.normal(2021, torch.arange(100), 17, 4000).double()


def test_normal_moments_within_four_standard_errors(many_normals):
    z = many_normals.flatten()
    n = z.numel()
    mean, var = z.mean().item(), z.var().item()
    kurt = (((z - z.mean()) ** 4).mean() / z.var(unbiased=False) ** 2).item()
    skew = (((z - z.mean()) ** 3).mean() / z.var(unbiased=False) ** 1.5).item()
    # Standard errors for N(0, 1) samples: mean 1/sqrt(n), variance sqrt(2/n),
    # skewness sqrt(6/n), kurtosis sqrt(24/n). Four of them each.
    assert abs(mean) < 4 / math.sqrt(n)
    assert abs(var - 1) < 4 * math.sqrt(2 / n)
    assert abs(skew) < 4 * math.sqrt(6 / n)
    assert abs(kurt - 3) < 4 * math.sqrt(24 / n)


def test_normal_kolmogorov_smirnov(many_normals):
    z, _ = many_normals.flatten().sort()
    n = z.numel()
    cdf = 0.5 * (1 + torch.special.erf(z / math.sqrt(2)))
    i = torch.arange(1, n + 1, dtype=torch.float64)
    d = torch.maximum(i / n - cdf, cdf - (i - 1) / n).max().item()
    # Asymptotic Kolmogorov critical value at significance 0.001: 1.949 / sqrt(n).
    assert d < 1.949 / math.sqrt(n)


def test_box_muller_pairs_are_independent(many_normals):
    # The two normals of one Box-Muller pair share a radius; for a correct transform they are
    # still independent, so x^2 and y^2 are uncorrelated (SE of the correlation ~ 1/sqrt(n)).
    z = many_normals.reshape(-1, 2)
    a, b = z[:, 0] ** 2, z[:, 1] ** 2
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert abs(corr) < 4 / math.sqrt(z.shape[0])
    lin = torch.corrcoef(torch.stack([z[:, 0], z[:, 1]]))[0, 1].item()
    assert abs(lin) < 4 / math.sqrt(z.shape[0])


def test_normals_are_finite_and_float32():
    z = rng.normal(0, torch.arange(10), 0, 10_000)
    assert z.dtype == torch.float32 and z.shape == (10, 10_000)
    assert bool(torch.isfinite(z).all())


def test_row_depends_only_on_seed_realization_step():
    whole = rng.normal(7, torch.arange(50), 3, 33)
    # Any subset, order or chunking of realizations gives the same rows.
    picked = torch.tensor([42, 3, 17])
    assert torch.equal(rng.normal(7, picked, 3, 33), whole[picked])
    chunks = torch.cat([rng.normal(7, r, 3, 33) for r in torch.arange(50).split(16)])
    assert torch.equal(chunks, whole)
    # A prefix of the parameter vector does not depend on its length.
    assert torch.equal(rng.normal(7, torch.arange(50), 3, 10), whole[:, :10])
    # Per-realization steps: row r at step s_r equals the one-step call at s_r.
    steps = torch.tensor([0, 5, 3])
    rows = rng.normal(7, torch.tensor([1, 2, 3]), steps, 33)
    for k in range(3):
        single = rng.normal(7, torch.tensor([k + 1]), int(steps[k]), 33)
        assert torch.equal(rows[k], single[0])


def test_streams_seeds_steps_realizations_differ():
    base = rng.normal(7, torch.arange(4), 3, 64)
    variants = [
        rng.normal(7, torch.arange(4), 3, 64, stream=rng.STREAM_LANGEVIN),
        rng.normal(7, torch.arange(4), 3, 64, stream=rng.STREAM_INIT),
        rng.normal(8, torch.arange(4), 3, 64),
        rng.normal(7 + 2**32, torch.arange(4), 3, 64),  # the high key word is used
        rng.normal(7, torch.arange(4), 4, 64),
        rng.normal(7, torch.arange(1, 5), 3, 64),
    ]
    for v in variants:
        assert not torch.isclose(v, base).any()
    tags = (rng.STREAM_MUTATION, rng.STREAM_ACCEPT, rng.STREAM_INIT, rng.STREAM_LANGEVIN)
    assert len(set(tags)) == len(tags)


def test_uniform_range_mean_and_layout():
    u = rng.uniform(5, torch.arange(100_000), 9)
    assert u.dtype == torch.float64 and bool((u >= 0).all()) and bool((u < 1).all())
    # Mean 1/2 and variance 1/12 within 4 standard errors (1/sqrt(12 n), ~sqrt(1/180 n)).
    n = u.numel()
    assert abs(u.mean().item() - 0.5) < 4 / math.sqrt(12 * n)
    assert abs(u.var().item() - 1 / 12) < 4 * math.sqrt(1 / (180 * n))
    assert torch.equal(rng.uniform(5, torch.tensor([77, 3]), 9), u[[77, 3]])
    assert not torch.equal(rng.uniform(5, torch.arange(10), 10), u[:10])
    # Accept bits and mutation bits are different streams.
    assert not torch.equal(rng.uniform(5, torch.arange(10), 9, stream=rng.STREAM_MUTATION), u[:10])


# ---------------------------------------------------------------- counter layout and range

def _kernels_available() -> bool:
    from negd import kernels

    return kernels.available()


def test_counter_words_below_2_to_the_32_are_the_plain_layout():
    # With step, realization < 2^32 the counter is (block, step, realization, stream) exactly:
    # numbers drawn before the high bits were folded into word 3 are unchanged.
    step, rid = _t(2**32 - 1), torch.tensor([0, 7, 2**32 - 1])
    w1, w2, w3 = rng.counter_words(step, rid, rng.STREAM_LANGEVIN)
    assert torch.equal(w1, step) and torch.equal(w2, rid)
    assert torch.equal(w3, torch.full((3,), rng.STREAM_LANGEVIN))
    x0, _, _, _ = rng.philox4x32(torch.zeros(3, dtype=torch.int64), step, rid, _t(rng.STREAM_ACCEPT), 99)
    for uniform in (rng.uniform, rng.uniform_reference):
        assert torch.equal(uniform(99, rid, 2**32 - 1), x0.double() * 2.0**-32)


def test_counter_words_fold_high_bits_into_word3():
    step, rid = _t(2**32 + 5), torch.tensor([7, 2**32 + 7, 2**44 - 1])
    w1, w2, w3 = rng.counter_words(step, rid, 2)
    assert w1.item() == 5 and torch.equal(w2, rid & 0xFFFFFFFF)
    assert w3.tolist() == [2 | 1 << 8, 2 | 1 << 8 | 1 << 20, 2 | 1 << 8 | 0xFFF << 20]
    x0, _, _, _ = rng.philox4x32(torch.zeros(3, dtype=torch.int64), w1, w2, w3, 5)
    assert torch.equal(rng.uniform_reference(5, rid, 2**32 + 5, stream=2), x0.double() * 2.0**-32)


def test_high_counter_bits_give_new_numbers():
    rid = torch.tensor([7, 2**32 + 7])
    for normal in (rng.normal, rng.normal_reference):
        low, high = normal(3, rid, 5, 40), normal(3, rid, 2**32 + 5, 40)
        assert not torch.isclose(low[0], low[1]).any()  # realization 2^32 + 7 is not 7
        assert not torch.isclose(low, high).any()  # step 2^32 + 5 is not step 5
    u = rng.uniform_reference(3, torch.tensor([7, 2**32 + 7, 7]), torch.tensor([5, 5, 2**32 + 5]))
    assert len(set(u.tolist())) == 3


def test_numbers_unchanged_from_the_original_layout():
    # sha256 of these draws as computed by the code before step/realization >= 2^32 were folded
    # into word 3 (torch path and kernel agreed). Any change of a number below 2^32 breaks it.
    import hashlib

    for normal, uniform in ((rng.normal, rng.uniform), (rng.normal_reference, rng.uniform_reference)):
        h = hashlib.sha256()
        for seed, step, rids, n, stream in [(0, 0, [0], 1, 0), (12345, 7, [0, 1, 5, 2**32 - 1], 37, 0),
                                            (2**64 - 1, 2**32 - 1, [3, 4], 769, 3), (99, 123456, [7], 5, 2)]:
            h.update(normal(seed, torch.tensor(rids), step, n, stream=stream).numpy().tobytes())
            h.update(uniform(seed, torch.tensor(rids), step, stream=1).numpy().tobytes())
        assert h.hexdigest() == "1eb6482f7d7c17199d7ef9a44cf9e3f78d795987f0e78b292d46d37eb52af343"


@pytest.mark.parametrize("fn", ["normal", "normal_reference", "uniform", "uniform_reference"])
@pytest.mark.parametrize("name, kwargs", [
    ("step", {"step": -1}), ("step", {"step": 2**44}), ("step", {"step": torch.tensor([0, -2])}),
    ("step", {"step": torch.tensor([2**44, 0])}), ("step", {"step": 1.5}),
    ("realization", {"realizations": torch.tensor([0, -1])}),
    ("realization", {"realizations": torch.tensor([2**44, 1])}),
    ("stream", {"stream": 256}), ("stream", {"stream": -1}),
])
def test_out_of_range_counters_raise(fn, name, kwargs):
    args = {"seed": 1, "realizations": torch.tensor([0, 1]), "step": 3, **kwargs}
    if fn.startswith("normal"):
        args["n"] = 5
    with pytest.raises(NegdError, match=rf"^{name}: must be an integer"):
        getattr(rng, fn)(**args)


def test_largest_counters_are_accepted():
    top = torch.tensor([rng.REALIZATION_LIMIT - 1])
    assert torch.isfinite(rng.normal(1, top, rng.STEP_LIMIT - 1, 3, stream=rng.STREAM_LIMIT - 1)).all()
    assert 0 <= rng.uniform_reference(1, top, rng.STEP_LIMIT - 1).item() < 1


# ---------------------------------------------------------------- kernel dispatch

@pytest.mark.skipif(not _kernels_available(), reason="C kernels unavailable (no gcc or NEGD_DISABLE_KERNELS)")
@pytest.mark.parametrize("seed", [0, 31337, 2**64 - 1])
def test_dispatched_normals_and_uniforms_equal_reference_bitwise(seed):
    cases = [  # realizations, step, n, stream: n off the 4/8/32 multiples, R = 1, high counters
        (torch.tensor([0]), 0, 1, rng.STREAM_MUTATION),
        (torch.tensor([5]), 2**32 + 5, 33, rng.STREAM_LANGEVIN),
        (torch.tensor([2**32 + 7, 3]), 17, 7, rng.STREAM_INIT),
        (torch.arange(9) * 1_000_003, 123, 95, rng.STREAM_MUTATION),
        (torch.arange(4) + 2**44 - 4, 2**44 - 1, 130, rng.STREAM_ACCEPT),
        (torch.tensor([1, 2, 3]), torch.tensor([0, 2**32 + 1, 9]), 31, rng.STREAM_LANGEVIN),
        (torch.tensor([6, 2]), torch.tensor(4), 64, rng.STREAM_MUTATION),
        (torch.arange(3), 2, 0, rng.STREAM_MUTATION),
    ]
    for realizations, step, n, stream in cases:
        fast = rng.normal(seed, realizations, step, n, stream)
        slow = rng.normal_reference(seed, realizations, step, n, stream)
        assert fast.shape == slow.shape == (realizations.numel(), n) and fast.dtype == torch.float32
        assert torch.equal(fast.view(torch.int32), slow.view(torch.int32)), (realizations, step, n, stream)
        assert torch.equal(rng.uniform(seed, realizations, step, stream),
                           rng.uniform_reference(seed, realizations, step, stream))


def test_reference_path_without_kernels(monkeypatch):
    monkeypatch.setenv("NEGD_DISABLE_KERNELS", "1")
    realizations = torch.tensor([4, 2**32 + 4])
    assert torch.equal(rng.normal(2, realizations, 9, 13), rng.normal_reference(2, realizations, 9, 13))
    # non-vector layouts the kernel does not take go to the torch path
    grid = torch.tensor([[1, 2], [3, 4]])
    assert rng.uniform(2, grid, 9).shape == (2, 2)
