"""Neuroevolution on minibatches (:class:`negd.losses.minibatch.MinibatchLoss`).

The rule and its SGD twin (:class:`negd.twins.minibatch.MinibatchGradient`) ask the loss for the
batches of their step (``loss_fn.at(state)``; any other loss function is used as it is, the same
data every step), so a neuroevolution ensemble and its SGD twin run with the same seed see the same
batch sequence, realization by realization.

:class:`MinibatchNeuroevolution` has three ways to score the current parameters (noise policies):

* ``"paired"``: old and new parameters on the same batch, two evaluations per step. At beta = inf
  the twin is normalized SGD with alpha = sigma/sqrt(2 pi) on the same batches
  (:func:`negd.twins.minibatch_twin`), exactly as in the full-batch case with g replaced by the batch
  gradient;
* ``"stale"``: the stored loss of the current parameters, from the batch on which they were accepted
  (one evaluation per step). The batch noise of the comparison, of standard deviation s, acts like a
  temperature: for s >> sigma |g| acceptance is about Phi(-dU/s), whose drift equals the Metropolis
  one at beta_eff = sqrt(2/pi)/s (:func:`negd.theory.minibatch.stale_beta_eff`);
* ``"fresh"``: the proposal on the step's batch (``loss_fn.at(state)``), the current parameters
  re-scored on a second, independent batch of the same step (``loss_fn.second_draw(state)``,
  :func:`negd.losses.minibatch.second_draw_loss`), two evaluations per step. With loss noise of
  s.d. s per evaluation the comparison carries noise of variance 2 s^2 and acts as a temperature:
  at beta = inf the drift is the Metropolis one at beta_eff = 1/(s sqrt(pi)) and the stationary
  law, for small sigma, about exp(-2 beta_eff U) (:mod:`negd.theory.minibatch`). Unlike "stale",
  no kept loss accumulates a winner's curse: every comparison is on new noise. A loss with ``at``
  but no ``second_draw`` is refused in one line; a deterministic loss (no ``at``) is its own
  second draw.

Mutations and uniforms are those of :class:`negd.rules.Neuroevolution`, so with a full-batch loss all three
modes are the paper's rule. ``state.loss`` is the loss on the batch of the last comparison (in the
fresh mode: the proposal's batch if it was accepted, the second batch if not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.losses.minibatch import check_second_draw, second_draw_loss, step_loss
from negd.rules.neuroevolution import Neuroevolution, metropolis_accept
from negd.state import State
from negd.validation import NegdError

__all__ = ["MinibatchNeuroevolution", "MODES"]

MODES = ("paired", "fresh", "stale")


@dataclass(frozen=True)
class MinibatchNeuroevolution:
    """Neuroevolution on minibatches, ``mode`` "paired", "fresh" or "stale" (module docstring)."""

    sigma: float | Tensor
    beta: float = math.inf
    mode: str = "paired"

    def __post_init__(self) -> None:
        plain = Neuroevolution(self.sigma, self.beta)  # validates sigma and beta
        object.__setattr__(self, "sigma", plain.sigma)
        object.__setattr__(self, "beta", plain.beta)
        if self.mode not in MODES:
            raise NegdError(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")

    @property
    def evaluations_per_step(self) -> int:
        return 1 if self.mode == "stale" else 2

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        if self.mode == "fresh":
            check_second_draw(loss_fn)  # refused before any work, not at the first step
        params = as_ensemble_params(params, realizations)
        plain = Neuroevolution(self.sigma, self.beta)
        state = plain.init(params, lambda p: torch.zeros(p.shape[0]), seed=seed, realization=realization)
        return state.replace(loss=evaluate(step_loss(loss_fn, state), params))

    def step(self, state: State, loss_fn: LossFn) -> State:
        batch_loss = step_loss(loss_fn, state)
        proposal = state.params + Neuroevolution(self.sigma, self.beta).mutation(state)
        new_loss = evaluate(batch_loss, proposal)
        if self.mode == "paired":  # common random numbers: the same batch for both
            old_loss = evaluate(batch_loss, state.params)
        elif self.mode == "fresh":  # independent noise: a second batch of the same step
            old_loss = evaluate(second_draw_loss(loss_fn, state), state.params)
        else:
            old_loss = state.loss
        u = None if math.isinf(self.beta) else rng.uniform(state.seed, state.realization, state.step)
        accept = metropolis_accept(new_loss, old_loss, self.beta, u)
        dtype = state.loss.dtype
        return state.replace(
            params=torch.where(accept[:, None], proposal, state.params),
            loss=torch.where(accept, new_loss.to(dtype), old_loss.to(dtype)),
            step=state.step + 1, accepted=accept, tied=new_loss == old_loss)
