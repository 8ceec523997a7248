"""Two interleaved half circles ("two moons"), generated with :mod:`negd.rng`.

The construction of scikit-learn's ``make_moons``: class 0 on the upper half circle
(cos t, sin t), class 1 on the lower one shifted, (1 - cos t, 1/2 - sin t), t evenly spaced in
[0, pi], plus isotropic Gaussian noise of standard deviation ``noise`` (0.1). The noise is
negd's counter-based normal draw (stream :data:`negd.tasks.base.STREAM_DATA`, one row per point),
so the points differ from scikit-learn's for the same seed. 1000 points, 200 of them for test.
"""

from __future__ import annotations

import math

import torch

from negd import rng
from negd.tasks.base import STREAM_DATA, Task, split_indices
from negd.validation import check_int, check_nonnegative

__all__ = ["two_moons"]


def two_moons(points: int = 1000, noise: float = 0.1, seed: int = 0) -> Task:
    half = check_int("points", points, 4) // 2
    noise = check_nonnegative("noise", noise)
    t = torch.linspace(0, math.pi, half, dtype=torch.float64)
    upper = torch.stack((torch.cos(t), torch.sin(t)), dim=1)
    lower = torch.stack((1 - torch.cos(t), 0.5 - torch.sin(t)), dim=1)
    x = torch.cat((upper, lower))
    x = x + noise * rng.normal(seed, torch.arange(2 * half), 0, 2, stream=STREAM_DATA).double()
    y = torch.cat((torch.zeros(half, dtype=torch.int64), torch.ones(half, dtype=torch.int64)))
    train, test = split_indices(2 * half, (2 * half) // 5, seed)
    x = x.float()
    return Task("two-moons", x[train], y[train], x[test], y[test], n_classes=2)
