"""Adaptive Monte Carlo (aMC) as a ``torch.optim`` optimizer.

Whitelam, Selin, Benlolo, Casert & Tamblyn, Mach. Learn.: Sci. Technol. 3, 045026 (2022); the
algorithm and its notation are those of :mod:`negd.rules.adaptive`. One :meth:`AdaptiveMC.step` is
one aMC step on all parameters of the optimizer:

1. d = mu + sigma_g xi for every parameter (mu its adaptive mean, ``state[p]["mu"]``; sigma_g the
   current ``sigma`` of its group); add d in place and call ``closure()``;
2. accept by :func:`negd.rules.metropolis_accept` (one decision for all groups);
3. accepted: mu <- mu + epsilon (d - mu); rejected: copy the old values back;
4. after ``n_reset`` consecutive rejections every group's ``sigma`` is multiplied by ``shrink`` and
   every mu is set to 0.

Random numbers are those of the rule (``rng.normal(seed, [0], t, N)`` for the flat vector of all
parameters in group order, ``rng.uniform(seed, [0], t)`` at finite beta), so with one group it is
exactly ``negd.rules.AdaptiveMC`` with R = 1 on the flat parameters. ``state_dict`` holds the
shrunk sigmas (in ``param_groups``), every mu and the counters: a restored optimizer continues
exactly. Built on :class:`negd.optim.Neuroevolution` (same closure protocol, ``reevaluate`` for
minibatch closures, same checks).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from negd import rng
from negd.callbacks import Callback
from negd.optim.neuroevolution import _REALIZATION, Neuroevolution
from negd.rules.adaptive import amc_mutation, amc_update
from negd.rules.neuroevolution import metropolis_accept
from negd.validation import NegdError, check_amc_hyperparameters

__all__ = ["AdaptiveMC"]

class AdaptiveMC(Neuroevolution):
    """aMC of a model's parameters (module docstring).

    Args:
        params: parameters or param-group dicts.
        sigma: initial mutation scale (> 0); groups may override it; shrinks during training.
        epsilon: weight of an accepted move in the mean, in [0, 1] (0: no memory, mu = 0).
        n_reset: consecutive rejections that shrink sigma and reset mu (integer >= 1).
        shrink: factor applied to sigma then, in (0, 1) (0.95 in the paper).
        beta, seed, reevaluate, callbacks, log_every: as for :class:`negd.optim.Neuroevolution`.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], sigma: float,
                 epsilon: float = 0.1, n_reset: int = 100, shrink: float = 0.95,
                 beta: float = math.inf, seed: int = 0, reevaluate: bool = False, *,
                 callbacks: Callback | Iterable[Callback] | None = None, log_every: int = 1) -> None:
        self._hyper = check_amc_hyperparameters(epsilon, n_reset, shrink)
        super().__init__(params, sigma=sigma, beta=beta, seed=seed, reevaluate=reevaluate,
                         callbacks=callbacks, log_every=log_every)
        self._negd["rejections"] = 0

    @property
    def epsilon(self) -> float:
        return self._hyper[0]

    @property
    def n_reset(self) -> int:
        return self._hyper[1]

    @property
    def shrink(self) -> float:
        return self._hyper[2]

    @property
    def rejections(self) -> int:
        """Consecutive rejections since the last acceptance or reset."""
        return self._negd["rejections"]

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        sd["state"]["negd"]["amc"] = {"epsilon": self.epsilon, "n_reset": self.n_reset,
                                      "shrink": self.shrink}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("state", {}).get("negd", {})
        if "rejections" not in saved or "amc" not in saved:
            raise NegdError("state_dict: not an AdaptiveMC state dict (state['negd'] lacks the aMC "
                            "rejection count and hyperparameters)")
        super().load_state_dict(state_dict)
        amc = self._negd.pop("amc")
        self._hyper = check_amc_hyperparameters(amc["epsilon"], amc["n_reset"], amc["shrink"])

    def _mean(self, p: Tensor) -> Tensor:
        state = self.state[p]
        if "mu" not in state:
            state["mu"] = torch.zeros_like(p)
        return state["mu"]

    @torch.no_grad()
    def _step(self, closure: Callable[[], Any] | None) -> Tensor:
        """One aMC step (module docstring); returns the loss of the parameters it leaves (``step``,
        inherited, runs it and calls the callbacks)."""
        beta, params, old_loss, xi = self._start_step(closure)
        entry = self._negd
        moves, backups, pos = [], [], 0
        for p, sigma in params:
            backups.append(p.detach().clone())  # (x + d) - d need not be x in floating point
            noise = xi[pos:pos + p.numel()].view(p.shape).to(p.device)
            move = amc_mutation(noise, self._mean(p), sigma)
            p.add_(move)
            moves.append(move)
            pos += p.numel()

        new_loss = self._evaluate(closure)
        u = None if math.isinf(beta) else rng.uniform(entry["seed"], _REALIZATION, entry["step"])
        accept = bool(metropolis_accept(new_loss.reshape(1), old_loss.reshape(1), beta, u)[0])
        if accept:
            entry["loss"] = new_loss.to(old_loss.dtype)
            entry["accepted"] += 1
            entry["rejections"] = 0
            for (p, _), move in zip(params, moves):
                self.state[p]["mu"] = amc_update(self.state[p]["mu"], move, self.epsilon)
        else:
            for (p, _), old in zip(params, backups):
                p.copy_(old)
            entry["rejections"] += 1
            if entry["rejections"] >= self.n_reset:
                entry["rejections"] = 0
                for group in self.param_groups:
                    group["sigma"] = group["sigma"] * self.shrink
                for p, _ in params:
                    self.state[p]["mu"] = torch.zeros_like(p)
        entry["step"] += 1
        return entry["loss"]
