"""C kernels for gradient dynamics of MLP ensembles: loss and gradient, and fused Langevin steps.

:func:`mlp_value_and_grad` returns the loss U (float64) and its gradient (in the parameter dtype) of
every realization of an MLP with the mean squared error, by backpropagation in C
(``negd_grad.h``: per block of points, forward pass then the chain rule back through the layers),
parallel over realizations like the loss kernel. :func:`fused_langevin` runs many steps of
Langevin dynamics, x <- x - alpha grad U + s xi (Euler-Maruyama; Whitelam et al. 2021: the
finite-beta twin of neuroevolution), with xi the normals of :mod:`negd.rng` at (seed, realization,
step, stream), written with the roundings of :class:`negd.rules.Langevin`: given the same gradients,
the same steps bit for bit.

Covered: hidden activations :data:`GRADIENT_ACTIVATIONS` (whose derivative is a function of their
output), loss "mse", float32 or float64 parameters on CPU. Like the rest of the package this module
computes on tensors; deciding when it fits a rule is :func:`negd.engine.fused_step_fn`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from negd.kernels import ACTIVATIONS, LOSSES, MLPData, _ptr, _raise_counter_error, _threads, fits
from negd.kernels.build import load_library

__all__ = ["GRADIENT_ACTIVATIONS", "covers_gradient", "mlp_value_and_grad", "fused_langevin",
           "LangevinResult"]

GRADIENT_ACTIVATIONS = ("tanh", "relu", "identity")
_CODES = {ACTIVATIONS[name] for name in GRADIENT_ACTIVATIONS}


def covers_gradient(data: MLPData) -> bool:
    """Whether the gradient kernels take the network and loss of ``data`` (mse; a covered activation)."""
    return int(data.arch[5]) in _CODES and int(data.arch[6]) == LOSSES["mse"]


def mlp_value_and_grad(data: MLPData, params: Tensor) -> tuple[Tensor, Tensor] | None:
    """Losses [R] float64 and gradients [R, N] (dtype of ``params``) of every row of ``params``, or None.

    None when the kernel is unavailable, ``params`` does not fit it (:func:`negd.kernels.fits`) or the
    network is not covered (:func:`covers_gradient`).
    """
    lib = load_library()
    if lib is None or not fits(params, data) or not covers_gradient(data):
        return None
    params = params.detach().contiguous()
    loss = torch.empty(params.shape[0], dtype=torch.float64)
    grad = torch.empty_like(params)
    fn = getattr(lib, f"negd_mlp_grad_{data.suffix}")
    err = fn(_ptr(data.arch), data.n_points, data.ld, _ptr(data.x), _ptr(data.t), _ptr(params),
             params.shape[0], params.shape[1], _ptr(loss), _ptr(grad), _threads())
    _raise_counter_error(err, "mlp_grad")
    return loss, grad


@dataclass(frozen=True)
class LangevinResult:
    """Outcome of :func:`fused_langevin`: new params [R, N], their losses [R] float64 and gradients [R, N]."""

    params: Tensor
    loss: Tensor
    grad: Tensor


def _rates(value: float | Tensor, dtype: torch.dtype) -> Tensor:
    """A scalar or per-parameter rate as a contiguous 1-D tensor of ``dtype`` (float64 first: a float64
    run must see alpha = 1e-4, not the float32 number nearest to it)."""
    return torch.as_tensor(value, dtype=torch.float64).reshape(-1).to(dtype).contiguous()


def fused_langevin(data: MLPData, params: Tensor, grad: Tensor, realization: Tensor, *, seed: int, step: int,
                   steps: int, alpha: float | Tensor, noise: float | Tensor, stream: int) -> LangevinResult:
    """``steps`` steps x <- x - alpha g + noise xi of every row of ``params`` [R, N] from counter ``step``.

    ``grad``: the gradient at ``params``; ``alpha``, ``noise``: a number or [N] values (noise 0: no
    normals drawn, gradient descent). Inputs are not modified. Raises RuntimeError when the kernel is
    unavailable or does not cover the network.
    """
    lib = load_library()
    if lib is None or not covers_gradient(data):
        raise RuntimeError("negd gradient kernel unavailable for this network")
    r, n = params.shape
    params = params.detach().to(data.dtype).contiguous().clone()
    grad = grad.detach().to(data.dtype).contiguous().clone()
    loss = torch.empty(r, dtype=torch.float64)
    realization = realization.to(torch.int64).contiguous()
    alpha_t = _rates(alpha, data.dtype)
    noise_t = _rates(noise, data.dtype)
    noise_len = 0 if noise_t.numel() == 1 and float(noise_t[0]) == 0.0 else noise_t.numel()
    fn = getattr(lib, f"negd_fused_langevin_{data.suffix}")
    err = fn(_ptr(data.arch), data.n_points, data.ld, _ptr(data.x), _ptr(data.t), _ptr(params), _ptr(loss),
             _ptr(grad), _ptr(realization), r, n, seed, step, int(steps), _ptr(alpha_t), alpha_t.numel(),
             _ptr(noise_t), noise_len, stream, _threads())
    _raise_counter_error(err, "fused_langevin")
    return LangevinResult(params, loss, grad)
