"""The paper's regression tasks (mean squared error on a fixed grid).

* ``sin2pi``: f(t) = sin(2 pi t) on 1000 points t_j = j/1000 of [0, 1) (shallow and
  finite-beta experiments);
* ``sinpi``: f(t) = sin(pi t) on 1001 points of [-1, 1], ``linspace(-1, 1, 1001)`` (deep
  experiment; the same grid as the authors' ``sin_pi_x.npz``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd.validation import NegdError, check_int

__all__ = ["Task", "TASKS", "get_task"]


@dataclass(frozen=True)
class Task:
    """Inputs [P, 1] and targets [P, 1] of a regression task, float32."""

    name: str
    inputs: Tensor
    targets: Tensor

    @property
    def n_points(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> Task:
        return Task(self.name, self.inputs.to(device), self.targets.to(device))


def sin2pi(points: int = 1000) -> Task:
    t = torch.arange(check_int("points", points), dtype=torch.float64) / points
    return Task("sin2pi", t[:, None].float(), torch.sin(2 * math.pi * t)[:, None].float())


def sinpi(points: int = 1001) -> Task:
    t = torch.linspace(-1, 1, check_int("points", points, 2), dtype=torch.float64)
    return Task("sinpi", t[:, None].float(), torch.sin(math.pi * t)[:, None].float())


TASKS = {"sin2pi": sin2pi, "sinpi": sinpi}


def get_task(name: str, points: int | None = None) -> Task:
    if name not in TASKS:
        raise NegdError(f"task: must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]() if points is None else TASKS[name](points)
