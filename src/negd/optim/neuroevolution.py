"""Neuroevolution as a drop-in ``torch.optim.Optimizer``.

Conditioned stochastic mutation of Whitelam, Selin, Park & Tamblyn, "Correspondence between
neuroevolution and gradient descent", Nat. Commun. 12, 6317 (2021), applied to the parameters
of an ordinary ``nn.Module``. One call of :meth:`Neuroevolution.step` is one step of the
algorithm:

1. add sigma_g * xi to every parameter in place, xi ~ N(0, I) and sigma_g the ``sigma`` of the
   parameter's group;
2. call ``closure()`` for the loss U(x') of the mutated parameters;
3. accept with probability min(1, exp(-beta dU)) (:func:`negd.rules.metropolis_accept`;
   beta = inf accepts iff dU <= 0; a non-finite loss is never accepted);
4. otherwise copy the old values back.

A step whose mutation changes no parameter at all (sigma below the resolution of the parameters'
dtype, e.g. sigma = 1e-30) is counted as rejected, without calling the closure, and counted in
:attr:`Neuroevolution.unchanged_steps`; half-precision parameters (bfloat16, float16) whose
resolution swallows most mutations of the given sigma get a warning at construction. If the
closure raises (KeyboardInterrupt included), the parameters are restored before the exception
propagates, and the optimizer's state is as before the step. The closure must return a
floating-point loss: an integer or boolean loss is refused (it would compare truncated values).

Random numbers come from the counter-based generator of :mod:`negd.rng`: the noise of step t
is ``rng.normal(seed, [0], t, N)`` for the flat vector of all N parameters of all groups (in
group order, then parameter order), and the Metropolis uniform is ``rng.uniform(seed, [0], t)``.
The whole random state is therefore ``(seed, step)``, saved by :meth:`state_dict`, and a
restored optimizer continues exactly as the original. It is also exactly
``negd.rules.Neuroevolution`` with R = 1 on the same flat parameters and seed (per-group sigma
becomes a per-parameter sigma vector), so both take the same accepted trajectory when their
losses are computed the same way.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from copy import deepcopy
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from negd import rng
from negd.callbacks import Callback, Event, as_callbacks, emit, events_every
from negd.rules.neuroevolution import metropolis_accept
from negd.validation import NegdError, check_beta, check_positive, warn_if_sigma_unresolved

__all__ = ["Neuroevolution"]

# Key of the optimizer-wide entry of ``self.state`` (torch keeps non-tensor keys as they are
# in state_dict()/load_state_dict(), and does not cast their values to the parameters' dtype,
# which would round a float64 loss).
_STATE_KEY = "negd"
# The optimizer is realization 0 of the counter-based generator (negd.rng).
_REALIZATION = torch.zeros(1, dtype=torch.int64)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise NegdError(f"seed: must be an integer in [0, 2^64), got {seed!r}")
    return seed


def _check_group_sigma(value: Any, index: int) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise NegdError(f"sigma: param group {index} must have a scalar sigma (put parameters "
                            f"that need another sigma in their own group), got shape "
                            f"{list(value.shape)}")
        value = value.item()
    where = "sigma" if index == 0 else f"sigma (param group {index})"
    return check_positive(where, value)


def _memory(t: Tensor) -> tuple[Any, int, int]:
    """(storage, first byte, one past the last byte) that ``t``'s elements occupy."""
    size = t.element_size()
    start = t.storage_offset() * size
    extent = sum((n - 1) * abs(s) for n, s in zip(t.shape, t.stride())) if t.numel() else -1
    return (t.device, t.untyped_storage().data_ptr()), start, start + (extent + 1) * size


def _refuse_aliases(params: list[Any], earlier: list[Tensor], index: int) -> None:
    """Refuse a parameter listed twice, in one group or two, or two tensors sharing memory (views
    of one storage): a step adds its mutation to each, and restores each, so a rejected step would
    leave part of the mutation in the model (issue 19). What the right behaviour is, is undefined."""
    seen = list(earlier)
    for i, p in enumerate(params):
        if not isinstance(p, Tensor) or p.numel() == 0:
            continue  # torch's own checks name non-tensors
        where, lo, hi = _memory(p)
        for q in seen:
            other, qlo, qhi = _memory(q)
            if where == other and lo < qhi and qlo < hi:
                what = "is listed twice" if p is q else "shares memory with another parameter (a view)"
                raise NegdError(f"params: parameter {i} of param group {index} {what}; a parameter "
                                f"may appear once, in one group, and parameters may not overlap in memory")
        seen.append(p)


class Neuroevolution(Optimizer):
    """Neuroevolution (conditioned stochastic mutation) of a model's parameters.

    Args:
        params: parameters or param-group dicts, as for any ``torch.optim`` optimizer; each parameter
            once, in one group, and no two overlapping in memory (views of one tensor): refused.
        sigma: mutation scale (> 0); groups may override it.
        beta: inverse temperature (> 0, or ``math.inf`` for accept-iff-not-worse). One accept
            decision covers all groups, so every group must hold the same beta.
        seed: key of the counter-based generator, in [0, 2^64).
        reevaluate: if False (default) the loss of the current parameters is computed once, at
            the first step, and then carried (the accepted proposal's loss). Set True when the
            closure's loss changes between steps (minibatches, data augmentation): every step
            then calls the closure twice, once before mutating and once after, so the two losses
            compared are on the same batch.
        callbacks: a callable or several (negd.callbacks, e.g. a JSONLLogger), each given an
            Event("optim", steps, {loss, acceptance_rate, accepted}) every ``log_every`` steps.
        log_every: steps between two events (integer >= 1, default 1).

    ``step(closure)`` needs a closure that returns the loss of the model's current parameters
    (a scalar tensor or float). It is called under ``torch.no_grad()``: it must not call
    ``backward()``; gradients are never used. ``step`` returns the loss of the parameters it
    leaves in the model, as a 0-d tensor.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], sigma: float,
                 beta: float = math.inf, seed: int = 0, reevaluate: bool = False, *,
                 callbacks: Callback | Iterable[Callback] | None = None, log_every: int = 1) -> None:
        self._callbacks = as_callbacks(callbacks)
        self._log_every = events_every(1, log_every)
        sigma = _check_group_sigma(sigma, 0)
        beta = check_beta(beta)
        if not isinstance(reevaluate, bool):
            raise NegdError(f"reevaluate: must be True or False, got {reevaluate!r}")
        self.reevaluate = reevaluate
        super().__init__(params, {"sigma": sigma, "beta": beta})
        self.state[_STATE_KEY] = {"seed": _check_seed(seed), "step": 0, "loss": None,
                                  "accepted": 0}

    # -- configuration -----------------------------------------------------------------------

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        index = len(self.param_groups)
        params = param_group.get("params") if isinstance(param_group, dict) else None
        if isinstance(params, Tensor):
            params = [params]
        elif params is not None and not isinstance(params, set):  # torch refuses sets itself
            params = list(params)
        if isinstance(params, list):
            _refuse_aliases(params, [p for g in self.param_groups for p in g["params"]], index)
            param_group = {**param_group, "params": params}
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["sigma"] = _check_group_sigma(group["sigma"], index)
        group["beta"] = check_beta(group["beta"])
        for p in group["params"]:
            if not p.is_floating_point():
                raise NegdError(f"params: neuroevolution needs real floating-point parameters, "
                                f"got {p.dtype} in param group {index}")
            warn_if_sigma_unresolved(p, group["sigma"], f"parameters of param group {index}", 5)

    def _beta(self) -> float:
        """The one beta of all groups, re-validated (schedulers may have changed it)."""
        betas = [check_beta(g["beta"]) for g in self.param_groups]
        if any(b != betas[0] for b in betas):
            raise NegdError(f"beta: all param groups must share one beta (one accept/reject "
                            f"decision per step), got {betas}")
        return betas[0]

    # -- state ---------------------------------------------------------------------------------

    @property
    def _negd(self) -> dict[str, Any]:
        return self.state[_STATE_KEY]

    @property
    def seed(self) -> int:
        return self._negd["seed"]

    @property
    def steps(self) -> int:
        """Number of steps (proposals) taken so far; also the generator's counter."""
        return self._negd["step"]

    @property
    def accepted(self) -> int:
        """Number of accepted proposals so far."""
        return self._negd["accepted"]

    @property
    def unchanged_steps(self) -> int:
        """Steps whose mutation changed no parameter (rounded away): counted as rejected."""
        return self._negd.get("unchanged", 0)

    @property
    def acceptance_rate(self) -> float:
        """accepted / steps (NaN before the first step)."""
        return self.accepted / self.steps if self.steps else math.nan

    @property
    def loss(self) -> Tensor | None:
        """Loss of the current parameters as last evaluated (None before the first step)."""
        return self._negd["loss"]

    def invalidate_loss(self) -> None:
        """Forget the carried loss (call after changing the parameters outside ``step``)."""
        self._negd["loss"] = None

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict; ``state["negd"]`` holds seed, step, loss and accepted count."""
        sd = super().state_dict()
        sd["state"] = {**sd["state"], _STATE_KEY: deepcopy(self._negd)}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("state", {}).get(_STATE_KEY)
        if saved is None or not {"seed", "step", "loss", "accepted"} <= set(saved):
            raise NegdError("state_dict: not a Neuroevolution state dict (state['negd'] with seed, "
                            "step, loss and accepted is missing)")
        super().load_state_dict(state_dict)
        entry = deepcopy(saved)  # torch keeps non-parameter entries by reference
        entry["seed"] = _check_seed(entry["seed"])
        self.state[_STATE_KEY] = entry
        for i, group in enumerate(self.param_groups):
            _check_group_sigma(group["sigma"], i)
        self._beta()

    # -- the step --------------------------------------------------------------------------------

    def _evaluate(self, closure: Callable[[], Any]) -> Tensor:
        with torch.no_grad():
            out = closure()
        try:
            loss = torch.as_tensor(out).detach()
        except (TypeError, ValueError, RuntimeError):
            raise NegdError(f"closure: must return the scalar loss of the current parameters (a float or "
                            f"a 0-d float tensor), got {type(out).__name__}") from None
        if loss.numel() != 1 or loss.is_complex():
            raise NegdError(f"closure: must return the scalar loss of the current parameters, got "
                            f"{type(out).__name__} of shape {list(loss.shape)}")
        if not loss.is_floating_point():
            raise NegdError(f"closure: must return a floating-point loss, got {type(out).__name__} "
                            f"({str(loss.dtype).removeprefix('torch.')}): an integer loss would compare "
                            f"truncated values; return float(loss) or a float tensor")
        # float64, as every negd loss: the Metropolis test compares differences float32 cannot resolve
        return loss.reshape(()).to(torch.float64)

    def _parameters(self) -> list[tuple[Tensor, float]]:
        return [(p, _check_group_sigma(g["sigma"], i))
                for i, g in enumerate(self.param_groups) for p in g["params"]]

    def _start_step(self, closure: Callable[[], Any] | None
                    ) -> tuple[float, list[tuple[Tensor, float]], Tensor, Tensor]:
        """What every step begins with: the closure checked, the stored loss (re)evaluated where
        needed, and this step's normals of all parameters. Returns (beta, [(parameter, sigma)],
        current loss, xi [N])."""
        if closure is None:
            raise NegdError(f"closure: {type(self).__name__}.step needs a closure that returns the loss")
        params = self._parameters()
        entry = self._negd
        if self.reevaluate or entry["loss"] is None:
            entry["loss"] = self._evaluate(closure)
        n = sum(p.numel() for p, _ in params)
        xi = rng.normal(entry["seed"], _REALIZATION, entry["step"], n)[0]
        return self._beta(), params, entry["loss"], xi

    def step(self, closure: Callable[[], Any] | None = None) -> Tensor:  # type: ignore[override]
        """One step (see class docstring); returns the kept loss. Every ``log_every`` steps the
        callbacks get Event("optim", steps, {loss, acceptance_rate, accepted})."""
        loss = self._step(closure)
        if self._callbacks and self.steps % self._log_every == 0:
            emit(self._callbacks, Event("optim", self.steps, {
                "loss": float(loss), "acceptance_rate": self.acceptance_rate,
                "accepted": float(self.accepted)}))
        return loss

    @torch.no_grad()
    def _step(self, closure: Callable[[], Any] | None) -> Tensor:
        """One mutation + accept/reject step (see class docstring); returns the kept loss."""
        beta, params, old_loss, xi = self._start_step(closure)
        entry = self._negd
        backups, pos = [], 0
        for p, sigma in params:
            backups.append(p.detach().clone())
            # Same arithmetic as negd.rules.Neuroevolution.mutation: (dtype) xi * (dtype) sigma, then + x.
            part = xi[pos:pos + p.numel()].view(p.shape).to(dtype=p.dtype, device=p.device)
            p.add_(part * torch.tensor(sigma, dtype=p.dtype, device=p.device))
            pos += p.numel()

        if all(torch.equal(p, old) for (p, _), old in zip(params, backups)):
            # Nothing moved (sigma below the dtype's resolution): not an accepted move.
            if entry.get("unchanged", 0) == 0:
                warnings.warn(f"negd: step {entry['step']} changed no parameter (sigma below the "
                              f"resolution of the parameters' dtype); such steps count as rejected "
                              f"(Neuroevolution.unchanged_steps)", RuntimeWarning, stacklevel=2)
            entry["unchanged"] = entry.get("unchanged", 0) + 1
            entry["step"] += 1
            return entry["loss"]
        try:
            new_loss = self._evaluate(closure)
        except BaseException:
            # KeyboardInterrupt included: never leave an unvetted mutation in the model.
            for (p, _), old in zip(params, backups):
                p.copy_(old)
            raise
        u = None if math.isinf(beta) else rng.uniform(entry["seed"], _REALIZATION, entry["step"])
        accept = bool(metropolis_accept(new_loss.reshape(1), old_loss.reshape(1), beta, u)[0])
        if accept:
            entry["loss"] = new_loss.to(old_loss.dtype)
            entry["accepted"] += 1
        else:
            for (p, _), old in zip(params, backups):
                p.copy_(old)
        entry["step"] += 1
        return entry["loss"]
