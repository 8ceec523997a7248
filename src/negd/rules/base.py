"""The one interface every update rule implements, and helpers shared by all of them.

A rule is a small frozen dataclass of hyperparameters with two pure functions::

    state = rule.init(params, loss_fn, seed=0)   # params: [R, N] (or [N], shared start)
    state = rule.step(state, loss_fn)             # one step of all R realizations

``loss_fn`` maps flat parameters [R, N] to losses [R] (see :mod:`negd.ensemble`); it is passed
at every step so that minibatch losses and schedules fit the same signature. Because every rule
has this signature, code that compares dynamics (:mod:`negd.compare`) is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from negd.state import State
from negd.validation import NegdError, check_finite, check_int

__all__ = ["LossFn", "UpdateRule", "init_state", "value_and_grad", "as_ensemble_params", "evaluate",
           "check_losses"]

LossFn = Callable[[Tensor], Tensor]


@runtime_checkable
class UpdateRule(Protocol):
    """Protocol of an update rule (see module docstring)."""

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State: ...

    def step(self, state: State, loss_fn: LossFn) -> State: ...


def as_ensemble_params(params: Tensor, realizations: int | None = None) -> Tensor:
    """Validate parameters and return them as [R, N].

    A 1-D vector [N] is the paper's set-up (every realization starts from the same
    parameters) and needs ``realizations``; a 2-D tensor [R, N] is used as it is.
    """
    if not isinstance(params, Tensor):
        raise NegdError(f"params: must be a torch.Tensor of shape [N] or [R, N], got "
                        f"{type(params).__name__}")
    if params.dtype not in (torch.float32, torch.float64):
        raise NegdError(f"params: dtype must be float32 or float64, got {params.dtype} (float16/bfloat16 "
                        f"cannot resolve mutations: a move of sigma = 1e-3 rounds away near 1)")
    check_finite("params", params)
    if params.dim() == 1:
        r = check_int("realizations", 1 if realizations is None else realizations)
        return params.detach().unsqueeze(0).expand(r, -1).clone()
    if params.dim() == 2:
        if params.shape[0] < 1 or params.shape[1] < 1:
            raise NegdError(f"params: shape [R, N] needs R >= 1 and N >= 1, got "
                            f"{list(params.shape)}")
        if realizations is not None and realizations != params.shape[0]:
            raise NegdError(f"realizations: {realizations} does not match params with "
                            f"{params.shape[0]} rows")
        return params.detach().clone()
    raise NegdError(f"params: must have shape [N] or [R, N], got {list(params.shape)}")


def check_losses(loss: object, rows: int) -> Tensor:
    """``loss`` as float64 [rows], or NegdError when it is not one floating-point loss per realization.

    States keep float64 losses whatever the parameter dtype (a float32 loss cannot resolve the
    dU of small mutations; :mod:`negd.resolution`); a loss function should reduce in float64,
    as :class:`negd.ensemble.MLPLoss` and :class:`negd.ensemble.ModuleLoss` do.
    """
    if not isinstance(loss, Tensor) or loss.shape != (rows,):
        got = list(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise NegdError(f"loss_fn: must map params [R, N] to losses [R] = [{rows}], got {got}")
    if not loss.is_floating_point():
        raise NegdError(f"loss_fn: must return floating-point losses, got {loss.dtype}")
    return loss.to(torch.float64)


def evaluate(loss_fn: LossFn, params: Tensor) -> Tensor:
    """Call ``loss_fn`` without autograd: float64 losses [R], one per realization."""
    with torch.no_grad():
        loss = loss_fn(params)
    return check_losses(loss, params.shape[0])


def value_and_grad(loss_fn: LossFn, params: Tensor) -> tuple[Tensor, Tensor]:
    """Losses [R] and gradients [R, N] of every realization.

    Uses ``loss_fn.value_and_grad`` when the loss provides one (an analytic fast path),
    autograd otherwise. Realizations are independent, so the gradient of the summed loss
    is each realization's own gradient.
    """
    custom = getattr(loss_fn, "value_and_grad", None)
    if custom is not None:
        loss, grad = custom(params)
        return check_losses(loss, params.shape[0]), grad
    with torch.enable_grad():
        p = params.detach().requires_grad_(True)
        loss = check_losses(loss_fn(p), params.shape[0])
        (grad,) = torch.autograd.grad(loss.sum(), p)
    return loss.detach(), grad


def init_state(params: Tensor, loss: Tensor, *, seed: int, realization: Tensor | None,
               extras: dict[str, Tensor] | None = None) -> State:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise NegdError(f"seed: must be an integer in [0, 2^64), got {seed!r}")
    r = params.shape[0]
    if realization is None:
        realization = torch.arange(r, dtype=torch.int64, device=params.device)
    elif realization.shape != (r,):
        raise NegdError(f"realization: must have shape [{r}], got {list(realization.shape)}")
    return State(params=params, loss=loss, step=0, seed=seed,
                 realization=realization.to(device=params.device, dtype=torch.int64),
                 accepted=torch.zeros(r, dtype=torch.bool, device=params.device),
                 extras=extras or {})
