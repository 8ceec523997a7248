"""The problem an experiment runs: loss, initial parameters and the rules of each arm, from its config.

Whitelam et al. 2021 set-up (negd.experiments.run.runner): R neuroevolution realizations from one shared
x(0) next to a twin: gradient descent, a Langevin or moment-matched Langevin ensemble, or the mean-field
twin (neuroevolution's expected step from M proposals: it only evaluates the loss, never its
gradient). Built once per run, and once per worker process by the Ray shards
(negd.experiments.shards.on_ray), from the configuration alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from negd.analysis.rundir import ENSEMBLE_TWINS
from negd.dtypes import DTYPES
from negd.experiments.config.schema import Arm, ExperimentConfig
from negd.experiments.run.twin import TwinLoss, langevin_twin_rule
from negd.losses.mlp import MLPLoss
from negd.losses.models import paper_init, torch_default_init
from negd.rules import (
    GradientDescent,
    MeanFieldTwin,
    MomentMatchedLangevin,
    Neuroevolution,
    NormalizedGradientDescent,
    UpdateRule,
)
from negd.tasks import get_task
from negd.validation import NegdError

__all__ = ["Problem", "device_of"]


def device_of(config: ExperimentConfig) -> torch.device:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise NegdError("device: cuda is not available on this machine (use --device cpu)")
    return torch.device(config.device)


@dataclass
class Problem:
    """Everything an arm needs that follows from the configuration alone (the runner's and every shard's:
    a Ray worker builds the same problem, so its numbers are the runner's)."""

    config: ExperimentConfig
    loss_fn: MLPLoss
    x0: Tensor
    device: torch.device

    @property
    def ensemble_twin(self) -> bool:
        """The twin is an ensemble (Langevin or moment-matched Langevin)."""
        return self.config.twin in ENSEMBLE_TWINS

    @property
    def twin_loss_fn(self) -> MLPLoss | TwinLoss:
        # the mean-field twin only evaluates the loss: it gets the loss itself, never a gradient path
        return TwinLoss(self.loss_fn) if self.config.twin in ("langevin", "matched") else self.loss_fn

    @property
    def twin_realizations(self) -> int:
        return int(self.config.twin_realizations) if self.ensemble_twin else 1

    @staticmethod
    def build(config: ExperimentConfig) -> Problem:
        device = device_of(config)
        spec = config.network.spec()
        task = get_task(config.task).to(device)
        loss_fn = MLPLoss(spec, task.inputs, task.targets, backend="auto")
        if config.init.kind == "paper":
            x0 = paper_init(spec.n_params, config.init.sigma0, seed=config.seed)
        else:
            x0 = torch_default_init(spec, seed=config.seed)
        return Problem(config, loss_fn, x0.to(device=device, dtype=DTYPES[config.dtype]), device)

    def ne_rule(self, arm: Arm) -> Neuroevolution:
        return Neuroevolution(sigma=arm.sigma, beta=self.config.beta)

    def gd_rule(self, arm: Arm) -> UpdateRule:
        if self.config.twin == "mean-field":  # one GD step is 1/lambda NE steps; no gradient asked
            return MeanFieldTwin(sigma=arm.sigma, beta=self.config.beta, proposals=self.config.twin_proposals,
                                 time_step=1 / arm.lam)
        if self.config.twin == "matched":  # one GD step is 1/lambda NE steps
            return MomentMatchedLangevin(sigma=arm.sigma, beta=self.config.beta, time_step=1 / arm.lam)
        if self.config.twin == "langevin":
            return langevin_twin_rule(self.config.alpha, arm.sigma, arm.lam)
        if self.config.gd_rule == "normalized":
            return NormalizedGradientDescent(alpha=self.config.alpha)
        return GradientDescent(alpha=self.config.alpha)
