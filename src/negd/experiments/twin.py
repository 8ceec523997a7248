"""The Langevin twin of finite-beta neuroevolution and a fast gradient for its ensemble.

Whitelam et al. 2021: at finite beta, for small sigma, neuroevolution (NE) is Langevin dynamics
x <- x - (beta sigma^2/2) grad U + sigma xi per NE step. An experiment measures time in GD steps
of rate alpha, one NE step being lambda GD steps (beta sigma^2/2 = lambda alpha), so per GD step
the twin is::

    x <- x - alpha grad U + s_gd xi,      s_gd = sigma / sqrt(lambda) = sqrt(2 alpha / beta)

(the noise variance per unit time t, sigma^2 / (lambda alpha), is NE's). s_gd does not depend
on the arm: every arm of a sigma scan has the same Langevin twin. Averaged over realizations
NE follows the *ensemble average* of this process, not noiseless GD, which is why the twin is
an ensemble of R_L realizations from the shared x(0) (noise: rng stream STREAM_LANGEVIN, so it
is independent of NE's mutations at the same seed and realization ids).

:class:`TwinLoss` gives the ensemble's losses and gradients. For the one-hidden-layer tanh MLP
with one input and one output (the finite-beta network of the paper) it uses a hand-written
backward pass with the fused kernel's float32 tanh: torch's float32 tanh costs ~3.6 ns per
element on this CPU (no AVX-512), 6x the kernel's, and autograd of the batched-matmul forward
costs ~3.3 ms per realization-step of the 1-256-1 network against ~0.4 ms here (measured). With
h = w1 x + b1, a = tanh(h), f = w2 . a + b2 and d_p = dU/df_p = 2 (f_p - y_p)/P::

    dU/dw2 = sum_p d_p a_p,   dU/db2 = sum_p d_p,
    dU/dw1 = w2 (sum_p d_p x_p - sum_p d_p x_p a_p^2),   dU/db1 = w2 (sum_p d_p - sum_p d_p a_p^2)

(using 1 - tanh^2), i.e. three matrix-vector products over [P, width] after the forward pass.
Other networks use autograd. The twin's rule is :class:`negd.Langevin`; on CPU its noise comes from
the C kernel's copy of :func:`negd.rng.normal` (bit-identical; 0.07 ms instead of 2.3 ms per step of
32 x 769 normals, measured).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from negd.ensemble import MLPLoss
from negd.rules import Langevin
from negd.rules.base import value_and_grad

__all__ = ["TwinLoss", "langevin_twin_rule", "langevin_noise_per_gd_step"]

# Realizations per block of the hand-written gradient: one keeps [P, width] in L2 (fastest, measured).
_BLOCK = 1


def langevin_noise_per_gd_step(sigma: float, lam: float) -> float:
    """s_gd = sigma / sqrt(lambda): NE's noise variance sigma^2 per NE step = lambda GD steps."""
    return sigma / math.sqrt(lam)


def langevin_twin_rule(alpha: float, sigma: float, lam: float) -> Langevin:
    """x <- x - alpha grad U + (sigma / sqrt(lambda)) xi per GD step (module docstring)."""
    return Langevin(alpha=alpha, noise=langevin_noise_per_gd_step(sigma, lam))


def _kernel_tanh(x: Tensor) -> Tensor:
    """The kernel's AVX2 float32 tanh (max error 2.4e-7 against torch), torch's elsewhere."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        from negd import kernels

        if kernels.available():
            return kernels.tanh(x)
    return torch.tanh(x)


class TwinLoss:
    """An :class:`MLPLoss` with a fast ``value_and_grad`` for 1-width-1 tanh MLPs (module docstring)."""

    def __init__(self, loss_fn: MLPLoss) -> None:
        self.loss_fn = loss_fn
        spec = loss_fn.spec
        self.n_params = loss_fn.n_params
        self.fast = spec.depth == 1 and spec.in_features == 1 and spec.out_features == 1

    def __call__(self, params: Tensor) -> Tensor:
        return self.loss_fn(params)

    def value_and_grad(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if not self.fast:
            return value_and_grad(self.loss_fn, params)
        spec = self.loss_fn.spec
        (w1s, b1s), (w2s, b2s) = spec.slices()
        x = self.loss_fn.inputs.to(params.dtype)[:, 0]  # [P]
        y = self.loss_fn.targets.to(params.dtype)[:, 0]  # [P]
        p = x.shape[0]
        losses = torch.empty(params.shape[0], dtype=torch.float64, device=params.device)
        grads = torch.empty_like(params)
        for start in range(0, params.shape[0], _BLOCK):
            q = params[start:start + _BLOCK]
            w1, b1, w2 = q[:, w1s], q[:, b1s], q[:, w2s]  # [c, W] each
            h = torch.addcmul(b1[:, None, :], x[None, :, None], w1[:, None, :])  # [c, P, W]
            a = _kernel_tanh(h)
            f = torch.bmm(a, w2[:, :, None])[:, :, 0]  # [c, P]
            f = f + q[:, b2s] if b2s is not None else f
            res = f - y
            losses[start:start + _BLOCK] = res.square().to(torch.float64).mean(dim=1)  # as negd.ensemble.mse
            d = res * (2.0 / p)  # dU/df
            g = grads[start:start + _BLOCK]
            g[:, w2s] = torch.bmm(d[:, None, :], a)[:, 0]
            if b2s is not None:
                g[:, b2s] = d.sum(dim=1, keepdim=True)
            torch.mul(a, a, out=h)  # a^2, reusing h's memory
            dx = d * x
            m = torch.bmm(torch.stack((d, dx), dim=1), h)  # [c, 2, W]
            g[:, b1s] = w2 * (d.sum(dim=1, keepdim=True) - m[:, 0])
            g[:, w1s] = w2 * (dx.sum(dim=1, keepdim=True) - m[:, 1])
        return losses, grads
