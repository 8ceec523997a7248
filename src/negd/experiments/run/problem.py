"""The problem an experiment runs: loss, initial parameters and the rules of each arm, from its config.

Whitelam et al. 2021 set-up (negd.experiments.run.runner): R neuroevolution realizations from one shared
x(0) next to a twin: gradient descent, a Langevin or moment-matched Langevin ensemble, or the mean-field
twin (neuroevolution's expected step from M proposals: it only evaluates the loss, never its
gradient). Built once per run, and once per worker process by the Ray shards
(negd.experiments.shards.on_ray), from the configuration alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from negd.analysis.rundir import ENSEMBLE_TWINS
from negd.dtypes import DTYPES
from negd.envs.loss import ControlLoss
from negd.experiments.config.schema import GRADIENT_FREE_TWINS, Arm, ExperimentConfig
from negd.experiments.run.objective import load_objective, objective_x0, probe_objective
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
    loss_fn: MLPLoss | ControlLoss | Any  # a regression MLP, a control task or an objective's loss
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
        """The loss and x(0): a regression task's MLPLoss, a control task's ControlLoss on its fixed
        episodes (negd.envs.loss) or the objective's loss (negd.experiments.run.objective); refuses,
        in one line, a twin that needs a gradient on an objective that has none."""
        device = device_of(config)
        dtype = DTYPES[config.dtype]
        if config.objective is not None:
            return Problem._build_objective(config, device, dtype)
        spec = config.spec()
        if config.control:
            loss_fn = ControlLoss(config.task, spec, episodes=config.episodes, seed=config.seed)
        else:
            task = get_task(config.task).to(device)
            loss_fn = MLPLoss(spec, task.inputs, task.targets, backend="auto")
        if config.init.kind == "paper":
            x0 = paper_init(spec.n_params, config.init.sigma0, seed=config.seed)
        else:
            x0 = torch_default_init(spec, seed=config.seed)
        return Problem(config, loss_fn, x0.to(device=device, dtype=dtype), device)

    @staticmethod
    def _build_objective(config: ExperimentConfig, device: torch.device, dtype: torch.dtype) -> Problem:
        name = config.objective
        loss_fn = load_objective(name)
        x0 = objective_x0(name, loss_fn)
        if x0 is None:
            x0 = paper_init(loss_fn.n_params, config.init.sigma0, seed=config.seed)
        x0 = x0.to(device=device, dtype=dtype)
        # two rows: a loss that ignores the batch (one value, or [N]) is caught here
        has_gradient = probe_objective(name, loss_fn, x0.unsqueeze(0).expand(2, -1).clone())
        if not has_gradient and config.twin not in GRADIENT_FREE_TWINS:
            raise NegdError(f"twin: objective {name} has no gradient (its losses carry no autograd graph); "
                            f"allowed twin: {', '.join(GRADIENT_FREE_TWINS)}, got {config.twin!r}")
        return Problem(config, loss_fn, x0, device)

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
