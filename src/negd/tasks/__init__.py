"""The task registry: the paper's regressions and classification tasks that need no download.

* ``sin2pi``, ``sinpi``: the paper's regressions (:mod:`negd.tasks.regression`);
* ``digits``: scikit-learn's 8x8 digits (:mod:`negd.tasks.digits`; needs scikit-learn);
* ``mnist1d``: MNIST-1D generated in code (:mod:`negd.tasks.mnist1d`, Greydanus 2020);
* ``two-moons``: two interleaved half circles (:mod:`negd.tasks.moons`).

Classification tasks have a fixed train/test split from a fixed seed (0), int64 labels and
``n_classes``; see :class:`negd.tasks.base.Task`.
"""

from __future__ import annotations

from collections.abc import Callable

from negd.tasks.base import Task
from negd.tasks.digits import digits
from negd.tasks.mnist1d import mnist1d
from negd.tasks.moons import two_moons
from negd.tasks.regression import sin2pi, sinpi
from negd.validation import NegdError

__all__ = ["Task", "TASKS", "REGRESSION_TASKS", "CLASSIFICATION_TASKS", "get_task"]

REGRESSION_TASKS: dict[str, Callable[..., Task]] = {"sin2pi": sin2pi, "sinpi": sinpi}
CLASSIFICATION_TASKS: dict[str, Callable[..., Task]] = {"digits": digits, "mnist1d": mnist1d,
                                                        "two-moons": two_moons}
TASKS: dict[str, Callable[..., Task]] = REGRESSION_TASKS | CLASSIFICATION_TASKS


def get_task(name: str, points: int | None = None) -> Task:
    """Task ``name``; ``points`` sets the grid size of a regression task."""
    if name not in TASKS:
        raise NegdError(f"task: must be one of {sorted(TASKS)}, got {name!r}")
    if points is None:
        return TASKS[name]()
    if name not in REGRESSION_TASKS:
        raise NegdError(f"points: only the regression tasks {sorted(REGRESSION_TASKS)} take a number "
                        f"of points, got points={points!r} for {name!r}")
    return TASKS[name](points)
