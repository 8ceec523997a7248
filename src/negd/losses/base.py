"""The loss interface of negd: ``loss_fn(params [R, N]) -> losses [R]``, float64, minimized.

Every update rule, twin and diagnostic calls a loss through the helpers here, so the checks live
in one place: parameters as an ensemble [R, N] (:func:`as_ensemble_params`), one finite-or-not
float64 loss per realization (:func:`check_losses`), and derivatives when a rule needs them:
the gradient (:func:`value_and_grad`) and Hessian-vector products H v
(:func:`hessian_vector_products`, double backward). Realizations are independent, so derivatives
of the summed loss over rows are each row's own.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from negd.validation import NegdError, check_finite, check_int

__all__ = ["LossFn", "as_ensemble_params", "check_losses", "evaluate", "value_and_grad",
           "hessian_vector_products"]

LossFn = Callable[[Tensor], Tensor]


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
    dU of small mutations; :mod:`negd.diagnostics.resolution`); a loss function should reduce in float64,
    as :class:`negd.losses.mlp.MLPLoss` and :class:`negd.losses.module.ModuleLoss` do.
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


def value_and_grad(loss_fn: LossFn, params: Tensor, *, missing_ok: bool = False
                   ) -> tuple[Tensor, Tensor | None]:
    """Losses [R] and gradients [R, N] of every realization.

    Uses ``loss_fn.value_and_grad`` when the loss provides one (an analytic fast path),
    autograd otherwise. Realizations are independent, so the gradient of the summed loss
    is each realization's own gradient. A black-box loss (its losses carry no autograd graph: a
    simulator, a control task, a greedy policy) has no gradient: ``missing_ok`` returns (losses,
    None) for it, otherwise it is a one-line :class:`NegdError`.
    """
    custom = getattr(loss_fn, "value_and_grad", None)
    if custom is not None:
        loss, grad = custom(params)
        return check_losses(loss, params.shape[0]), grad
    with torch.enable_grad():
        p = params.detach().requires_grad_(True)
        loss = check_losses(loss_fn(p), params.shape[0])
        if not loss.requires_grad:
            if missing_ok:
                return loss.detach(), None
            raise NegdError("loss: has no gradient (its losses carry no autograd graph: a black-box "
                            "objective); use a rule or twin that needs none (negd.twins.MeanFieldTwin)")
        (grad,) = torch.autograd.grad(loss.sum(), p)
    return loss.detach(), grad


def hessian_vector_products(loss_fn: LossFn, params: Tensor, probes: Tensor) -> Tensor:
    """H_r v for probes [K, R, N] -> [K, R, N], by double backward on K copies of the ensemble.

    Realizations are independent, so the Hessian of the summed loss over rows is block diagonal
    and one backward pass gives every row's own H v.
    """
    k, r, n = probes.shape
    with torch.enable_grad():
        rows = params.detach().unsqueeze(0).expand(k, r, n).reshape(k * r, n).clone().requires_grad_(True)
        loss = loss_fn(rows)
        if not isinstance(loss, Tensor) or loss.shape != (k * r,):
            raise NegdError(f"loss_fn: must map params [R, N] to losses [R], got "
                            f"{list(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
        (grad,) = torch.autograd.grad(loss.sum(), rows, create_graph=True)
        flat_probes = probes.reshape(k * r, n)
        if not grad.requires_grad:  # a loss linear in the parameters: H = 0
            return torch.zeros_like(probes)
        (hv,) = torch.autograd.grad((grad * flat_probes).sum(), rows, allow_unused=True)
    if hv is None:
        return torch.zeros_like(probes)
    return hv.detach().reshape(k, r, n)
