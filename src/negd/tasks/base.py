"""The :class:`Task` every experiment and benchmark reads, and its fixed train/test split.

A task is float32 inputs and targets for training and, for the classification tasks, a held-out
test split. Regression targets are float32 [P, out]; classification targets are int64 class
labels [P] in ``0 .. n_classes - 1``. Splits and any randomness of a generator come from the
counter-based :mod:`negd.rng` (a pure function of the seed), so a task is the same on every
machine and in every process.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from negd import rng
from negd.validation import NegdError, check_int

__all__ = ["Task", "split_indices", "STREAM_SPLIT", "STREAM_DATA"]

# Streams of negd.rng used by the task generators; far above the streams of the update rules
# (0-3, negd.rng) so that a task's numbers never coincide with a run's mutations at the same seed.
STREAM_SPLIT = 200
STREAM_DATA = 201


@dataclass(frozen=True)
class Task:
    """Inputs and targets of a regression or classification task (module docstring).

    ``input_shape`` is the shape of one example as a model expects it (e.g. (1, 8, 8) for the
    digits as images); ``inputs`` is always [P, prod(input_shape)] (flat features).
    """

    name: str
    inputs: Tensor
    targets: Tensor
    test_inputs: Tensor | None = None
    test_targets: Tensor | None = None
    n_classes: int | None = None
    input_shape: tuple[int, ...] | None = None

    @property
    def n_points(self) -> int:
        return self.inputs.shape[0]

    @property
    def is_classification(self) -> bool:
        return self.n_classes is not None

    def images(self, split: str = "train") -> Tensor:
        """Inputs of ``split`` ("train" or "test") reshaped to [P, *input_shape]."""
        x = self._split(split)[0]
        shape = self.input_shape or (x.shape[1],)
        return x.reshape(x.shape[0], *shape)

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        if split == "train":
            return self.inputs, self.targets
        if split == "test" and self.test_inputs is not None:
            return self.test_inputs, self.test_targets
        allowed = "train or test" if self.test_inputs is not None else "train (this task has no test split)"
        raise NegdError(f"split: must be {allowed}, got {split!r}")

    def to(self, device: torch.device | str) -> Task:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return replace(self, inputs=move(self.inputs), targets=move(self.targets),
                       test_inputs=move(self.test_inputs), test_targets=move(self.test_targets))


def split_indices(n: int, n_test: int, seed: int) -> tuple[Tensor, Tensor]:
    """A fixed random split of ``range(n)`` into train and test indices (sorted), from negd.rng."""
    check_int("n", n)
    if not 0 < check_int("n_test", n_test) < n:
        raise NegdError(f"n_test: must be between 1 and {n - 1}, got {n_test}")
    keys = rng.uniform(seed, torch.arange(n), 0, stream=STREAM_SPLIT)
    order = torch.argsort(keys, stable=True)
    return order[n_test:].sort().values, order[:n_test].sort().values
