"""The benchmark workloads: the paper's three network/task/temperature settings.

Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021):

* ``shallow``: 1-30-1 tanh net without output bias (N = 90) on 1000 points of sin(2 pi t),
  beta = inf (the paper's main experiment: 1000 realizations x 10^7 steps);
* ``deep``: 8 hidden tanh layers of 32 units (N = 7489) on 1001 points of sin(pi t), beta = inf;
* ``wide``: 1-256-1 tanh net (N = 769) on 1000 points of sin(2 pi t), finite beta = 1000;
* ``digits-mlp``: Flatten, Linear(64, 32), Tanh, Linear(32, 10) (N = 2410), softmax
  cross-entropy on the 1347 training images of scikit-learn's digits, beta = inf, sigma = 0.01;
* ``digits-cnn``: Conv2d(1, 8, 3, padding=1), Tanh, Flatten, Linear(512, 10) (N = 5210) on the
  same images as [1, 8, 8]; the classifiers' limit is matmul (forward FLOPs over the float32
  matmul rate); their peers are in :mod:`negd.bench.classifiers`.

Each workload also knows the size of its unavoidable arithmetic (tanh evaluations and
multiply-adds per realization-step), from which the harness derives the machine's limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from negd.losses.models import MLPSpec, flat_params, paper_init, torch_default_init
from negd.tasks import Task, get_task
from negd.validation import NegdError

__all__ = ["Workload", "ClassifierWorkload", "WORKLOADS", "get_workload", "initial_params",
           "initial_classifier_params"]


@dataclass(frozen=True)
class Workload:
    """One benchmark setting: network, task, mutation scale and inverse temperature."""

    name: str
    spec: MLPSpec
    task_name: str
    sigma: float
    beta: float
    # Which arithmetic bounds the step from below when everything else is free (see limit).
    limit_kind: str  # "tanh" or "matmul"

    default_realizations = (1, 100, 1000)

    def task(self, device: torch.device | str = "cpu") -> Task:
        return get_task(self.task_name).to(device)

    @property
    def n_points(self) -> int:
        return get_task(self.task_name).n_points

    @property
    def matmul_width(self) -> int:
        """Width of the [P, width] x [width, width] products whose rate is the matmul limit."""
        return self.spec.width

    @property
    def tanh_per_step(self) -> int:
        """tanh evaluations of one loss evaluation of one realization: P x hidden units."""
        return self.n_points * self.spec.depth * self.spec.width

    @property
    def flops_per_step(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of one forward pass of one realization."""
        return 2 * self.n_points * sum(i * o for i, o, _ in self.spec.layer_sizes)

    def describe(self) -> str:
        beta = "inf" if math.isinf(self.beta) else f"{self.beta:g}"
        sizes = "-".join([str(self.spec.in_features)] + [str(self.spec.width)] * self.spec.depth
                         + [str(self.spec.out_features)])
        return (f"{self.name}: {sizes} tanh (N={self.spec.n_params}), {self.n_points} points "
                f"{self.task_name}, sigma={self.sigma:g}, beta={beta}")


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(512, 10))


@dataclass(frozen=True)
class ClassifierWorkload:
    """A classifier benchmark setting (module docstring), with the attributes of :class:`Workload`
    that the harness reads."""

    name: str
    model: Callable[[], nn.Module]
    task_name: str
    images: bool  # inputs as [P, 1, 8, 8] (else flat [P, 64])
    sigma: float = 0.01
    beta: float = math.inf
    limit_kind: str = "matmul"
    matmul_width: int = 32  # the [P, 32] x [32, 32] products whose rate is the machine's limit
    default_realizations: tuple[int, ...] = (1, 32, 256)

    def task(self, device: torch.device | str = "cpu") -> Task:
        return get_task(self.task_name).to(device)

    def data(self, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        task = self.task(device)
        return (task.images() if self.images else task.inputs), task.targets

    @property
    def n_points(self) -> int:
        return get_task(self.task_name).n_points

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model().parameters())

    @property
    def flops_per_step(self) -> int:
        """Multiply-add FLOPs (2 per MAC) of one forward pass over the training set."""
        macs = 0
        x = self.data()[0][:1]
        for layer in self.model():
            out = layer(x)
            if isinstance(layer, nn.Linear):
                macs += layer.in_features * layer.out_features
            elif isinstance(layer, nn.Conv2d):
                macs += out[0].numel() * layer.weight[0].numel()
            x = out
        return 2 * self.n_points * macs

    @property
    def tanh_per_step(self) -> int:
        """tanh evaluations of one forward pass over the training set (outputs of nn.Tanh layers)."""
        count = 0
        x = self.data()[0][:1]
        for layer in self.model():
            x = layer(x)
            if isinstance(layer, nn.Tanh):
                count += x[0].numel()
        return self.n_points * count

    def describe(self) -> str:
        layers = ", ".join(str(m) for m in self.model())
        return (f"{self.name}: {layers} (N={self.n_params}), cross-entropy on {self.n_points} digits, "
                f"sigma={self.sigma:g}, beta=inf")


WORKLOADS: dict[str, Workload | ClassifierWorkload] = {
    "shallow": Workload("shallow", MLPSpec(1, 30, output_bias=False), "sin2pi", 1e-2, math.inf, "tanh"),
    "deep": Workload("deep", MLPSpec(8, 32), "sinpi", 1e-3, math.inf, "matmul"),
    "wide": Workload("wide", MLPSpec(1, 256), "sin2pi", 1e-2, 1000.0, "tanh"),
    "digits-mlp": ClassifierWorkload("digits-mlp", _mlp, "digits", images=False),
    "digits-cnn": ClassifierWorkload("digits-cnn", _cnn, "digits", images=True),
}


def get_workload(name: str) -> Workload | ClassifierWorkload:
    if name not in WORKLOADS:
        raise NegdError(f"workloads: each must be one of {sorted(WORKLOADS)}, got {name!r}")
    return WORKLOADS[name]


def initial_params(workload: Workload, realizations: int, seed: int = 0) -> Tensor:
    """Starting parameters [R, N] float32, one independent network per realization.

    PyTorch's default initialization for ensembles of ordinary size; for the very large
    ensembles of the memory check, the paper's N(0, 0.1^2) draw (building 10^5 modules would
    dominate the check).
    """
    if realizations <= 10_000:
        return torch_default_init(workload.spec, seed=seed, realizations=realizations)
    return paper_init(workload.spec.n_params, 0.1, seed=seed, realizations=realizations)


def initial_classifier_params(workload: ClassifierWorkload, realizations: int, seed: int = 0) -> Tensor:
    """[R, N] float32, row r PyTorch's default initialization under a seed of (seed, r)."""
    rows = []
    with torch.random.fork_rng(devices=[]):
        for r in range(realizations):
            torch.manual_seed(seed * 1_000_003 + r)
            rows.append(flat_params(workload.model()))
    return torch.stack(rows)
