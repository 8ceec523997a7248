"""negd.tasks: the task registry, fixed splits, the digits / MNIST-1D / two-moons generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from negd.tasks import CLASSIFICATION_TASKS, REGRESSION_TASKS, TASKS, get_task
from negd.tasks.base import split_indices
from negd.tasks.mnist1d import _gaussian_filter, _interpolate, mnist1d, templates
from negd.tasks.moons import two_moons
from negd.validation import NegdError


def _needs(name: str) -> None:
    if name == "digits":
        pytest.importorskip("sklearn")


@pytest.mark.parametrize("name", sorted(CLASSIFICATION_TASKS))
def test_classification_tasks_have_fixed_disjoint_splits(name):
    _needs(name)
    task, again = get_task(name), get_task(name)
    assert task.is_classification and task.n_classes >= 2
    for a, b in ((task.inputs, again.inputs), (task.targets, again.targets),
                 (task.test_inputs, again.test_inputs)):
        assert torch.equal(a, b)  # deterministic
    assert task.inputs.dtype == task.test_inputs.dtype == torch.float32
    assert task.targets.dtype == task.test_targets.dtype == torch.int64
    assert task.inputs.dim() == 2 and task.inputs.shape[0] == task.targets.shape[0]
    assert task.test_inputs.shape[1] == task.inputs.shape[1]
    for labels in (task.targets, task.test_targets):
        assert int(labels.min()) >= 0 and int(labels.max()) < task.n_classes
    assert torch.isfinite(task.inputs).all() and torch.isfinite(task.test_inputs).all()
    # No example is in both splits.
    assert float(torch.cdist(task.test_inputs.double(), task.inputs.double()).min()) > 0


def test_digits_sizes_and_images():
    _needs("digits")
    task = get_task("digits")
    assert (task.n_points, task.test_inputs.shape[0], task.inputs.shape[1]) == (1347, 450, 64)
    assert float(task.inputs.min()) >= 0 and float(task.inputs.max()) <= 1
    assert task.images().shape == (1347, 1, 8, 8) and task.images("test").shape == (450, 1, 8, 8)
    assert torch.equal(task.images()[5].reshape(-1), task.inputs[5])


def test_split_indices_partition_and_depend_on_the_seed():
    train, test = split_indices(100, 25, seed=3)
    assert torch.equal(torch.sort(torch.cat((train, test))).values, torch.arange(100))
    assert test.shape == (25,)
    assert not torch.equal(split_indices(100, 25, seed=4)[1], test)
    with pytest.raises(NegdError, match="n_test"):
        split_indices(10, 10, seed=0)


def test_mnist1d_matches_the_original_construction():
    task = mnist1d()
    assert (task.n_points, task.test_inputs.shape[0], task.inputs.shape[1]) == (4000, 1000, 40)
    labels = torch.cat((task.targets, task.test_targets))
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    t = templates()
    assert torch.allclose(t[:, 0], torch.zeros(10, dtype=torch.float64), atol=1e-12)  # starts at 0
    assert torch.allclose((t * 6).std(dim=1, unbiased=False), torch.ones(10, dtype=torch.float64))
    # Smaller data sets are the first examples of each class generation, same seed -> same numbers.
    assert torch.equal(mnist1d(samples=200).inputs, mnist1d(samples=200).inputs)
    assert not torch.equal(mnist1d(samples=200, seed=1).inputs, mnist1d(samples=200).inputs)


def test_mnist1d_filter_and_interpolation_match_scipy_and_numpy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.randn(3, 72, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = ndimage.gaussian_filter1d(x.numpy(), 2, axis=1)  # mode "reflect", truncate 4
    assert np.allclose(_gaussian_filter(x).numpy(), ref, atol=1e-14)
    lengths = torch.tensor([48, 60, 72])
    out = _interpolate(x, lengths, 72).numpy()
    for i, n in enumerate(lengths.tolist()):
        expect = np.interp(np.linspace(0, 1, 72), np.linspace(0, 1, n), x[i, :n].numpy())
        assert np.allclose(out[i], expect, atol=1e-13)


def test_two_moons_shape_and_noise():
    task = two_moons()
    assert task.n_classes == 2 and task.n_points == 800 and task.test_inputs.shape == (200, 2)
    clean = two_moons(noise=0.0)
    assert not torch.equal(task.inputs, clean.inputs)
    with pytest.raises(NegdError, match="noise"):
        two_moons(noise=-1)


def test_registry_and_errors():
    assert set(TASKS) == set(REGRESSION_TASKS) | set(CLASSIFICATION_TASKS)
    regression = get_task("sin2pi")
    assert not regression.is_classification and regression.test_inputs is None
    assert get_task("sinpi", 11).n_points == 11
    with pytest.raises(NegdError, match="task"):
        get_task("cifar")
    with pytest.raises(NegdError, match="points"):
        get_task("two-moons", 10)
    with pytest.raises(NegdError, match="split"):
        regression.images("test")
