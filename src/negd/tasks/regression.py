"""The paper's regression tasks (mean squared error on a fixed grid), inputs and targets [P, 1] float32.

* ``sin2pi``: f(t) = sin(2 pi t) on 1000 points t_j = j/1000 of [0, 1) (shallow and
  finite-beta experiments);
* ``sinpi``: f(t) = sin(pi t) on 1001 points of [-1, 1], ``linspace(-1, 1, 1001)`` (deep
  experiment; the same grid as the authors' ``sin_pi_x.npz``).
"""

from __future__ import annotations

import math

import torch

from negd.tasks.base import Task
from negd.validation import check_int

__all__ = ["sin2pi", "sinpi"]


def sin2pi(points: int = 1000) -> Task:
    t = torch.arange(check_int("points", points), dtype=torch.float64) / points
    return Task("sin2pi", t[:, None].float(), torch.sin(2 * math.pi * t)[:, None].float())


def sinpi(points: int = 1001) -> Task:
    t = torch.linspace(-1, 1, check_int("points", points, 2), dtype=torch.float64)
    return Task("sinpi", t[:, None].float(), torch.sin(math.pi * t)[:, None].float())

