"""scikit-learn's digits: 1797 grey images of 8x8 pixels of the ten digits (no download).

The images ship with scikit-learn (an optional dependency: ``pip install negd[tasks]``); they are
the UCI "Optical Recognition of Handwritten Digits" test set. Pixels (0..16) are scaled to
[0, 1]. The split is fixed: 450 test images (a quarter, as scikit-learn's ``train_test_split``
default) drawn by :func:`negd.tasks.base.split_indices` from the seed, 1347 for training.
"""

from __future__ import annotations

import torch

from negd.tasks.base import Task, split_indices
from negd.validation import NegdError

__all__ = ["digits"]

N_TEST = 450


def digits(seed: int = 0) -> Task:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NegdError("task: 'digits' needs scikit-learn (pip install 'negd[tasks]' or "
                        "pip install scikit-learn)") from None
    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(data.target, dtype=torch.int64)
    train, test = split_indices(x.shape[0], N_TEST, seed)
    return Task("digits", x[train], y[train], x[test], y[test], n_classes=10, input_shape=(1, 8, 8))
