"""negd.losses.classification: cross-entropy reduced in float64, accuracy, and one-line errors for
bad labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from negd.losses.classification import (
    accuracy,
    check_classifier_targets,
    check_labels,
    cross_entropy,
    cross_entropy_unchecked,
)
from negd.validation import NegdError


@pytest.fixture
def logits_labels():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 300, 7, generator=g) * 3, torch.randint(0, 7, (300,), generator=g)


def test_cross_entropy_is_torchs_per_example_loss_averaged_in_float64(logits_labels):
    z, y = logits_labels
    loss = cross_entropy(z, y)
    assert loss.dtype == torch.float64 and loss.shape == (5,)
    for r in range(5):
        per_example = F.cross_entropy(z[r], y, reduction="none")  # float32, torch's own kernel
        assert per_example.dtype == torch.float32
        assert torch.allclose(loss[r], per_example.double().mean(), rtol=1e-13, atol=0)
    # The feature-major layout [R, C, P] gives the same numbers up to float32 rounding of (1).
    transposed = cross_entropy_unchecked(z.transpose(1, 2).contiguous(), y, class_dim=-2)
    assert torch.allclose(transposed, loss, rtol=1e-6, atol=0)


def test_float64_reduction_keeps_digits_float32_would_lose():
    # 2^20 examples with the same float32 loss (log 2) and one larger: the float64 mean of the float32
    # per-example losses is exact to ~1e-15 (a float32 accumulator would be off by ~1e-8 or more).
    p = 1 << 20
    z = torch.zeros(1, p, 2)
    z[0, -1, 0] = 10.0  # that example's label 1 has loss ~10
    y = torch.ones(p, dtype=torch.int64)
    each = F.cross_entropy(z[0, :1], y[:1]).double()  # float32 log(2), as float64
    exact = ((p - 1) * each + F.cross_entropy(z[0, -1:], y[-1:]).double()) / p
    assert abs(float(cross_entropy(z, y)[0]) - float(exact)) < 1e-12


def test_accuracy_counts_argmax_hits_first_index_on_ties():
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.0, 3.0]]])
    y = torch.tensor([0, 0, 0, 1])
    acc = accuracy(z, y)
    assert acc.dtype == torch.float64 and float(acc[0]) == 0.75


def test_bad_labels_get_one_line_errors():
    z = torch.zeros(2, 4, 3)
    with pytest.raises(NegdError, match="labels"):
        cross_entropy(z, torch.tensor([0, 1, 2, 3]))  # 3 is out of range for 3 classes
    with pytest.raises(NegdError, match="labels"):
        cross_entropy(z, torch.tensor([0.0, 1.0, 2.0, 0.0]))  # float labels
    with pytest.raises(NegdError, match="logits"):
        cross_entropy(z, torch.tensor([0, 1, 2]))  # P mismatch
    with pytest.raises(NegdError, match="targets"):
        check_labels(torch.tensor([[0, 1]]), 3)
    with pytest.raises(NegdError, match="targets"):
        check_labels(torch.tensor([-1, 0]), 3)
    with pytest.raises(NegdError, match="model") as err:
        check_classifier_targets(torch.tensor([0, 9]), 5, 2)
    assert "\n" not in str(err.value)
