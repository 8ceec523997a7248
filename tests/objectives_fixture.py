"""Black-box objectives for tests/test_run_objectives.py (imported by name: ``objective:
"objectives_fixture:kinked"``, with tests/ on sys.path as pytest puts it there).

``kinked``: U(x) = sum_i |x_i - 1| + 0.5 (x_i - 1)^2, evaluated in numpy (no autograd graph: a
loss with no gradient, as a simulator would be); ``smooth``: the quadratic part in torch (it has a
gradient); the others break the contract one way each.
"""

from __future__ import annotations

import numpy as np
import torch

N = 5


class Kinked:
    """Kinked at x_i = 1 in every coordinate; minimum 0 there."""

    n_params = N

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        x = params.detach().cpu().numpy().astype(np.float64) - 1.0
        return torch.from_numpy(np.sum(np.abs(x) + 0.5 * x * x, axis=1))

    def initial_params(self) -> np.ndarray:
        return np.linspace(-0.5, 0.5, N)


class Smooth:
    n_params = N

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((params.double() - 1.0) ** 2).sum(dim=1)


class WrongShape(Kinked):
    def __call__(self, params):
        return super().__call__(params)[:1]


class ReturnsNaN(Kinked):
    def __call__(self, params):
        return torch.full((params.shape[0],), float("nan"), dtype=torch.float64)


def kinked() -> Kinked:
    return Kinked()


def smooth() -> Smooth:
    return Smooth()


def wrong_shape() -> WrongShape:
    return WrongShape()


def returns_nan() -> ReturnsNaN:
    return ReturnsNaN()


def no_n_params():
    return lambda params: params.sum(dim=1)


not_callable = 3
