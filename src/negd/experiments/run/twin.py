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

:class:`TwinLoss` gives the ensemble's losses and gradients without autograd: for an MLP with the mean
squared error and tanh, relu or identity hidden layers (any depth and width) by backpropagation in the
C kernel (:mod:`negd.kernels.gradient`, float32 or float64 parameters on CPU), elsewhere by the same
closed-form backpropagation in batched torch ops (:mod:`negd.losses.backprop`); other networks use autograd.
It also lets :func:`negd.engine.fused_step_fn` run the Langevin rule's steps in the kernel
(:meth:`TwinLoss.kernel_grad_data`): one call advances R_L realizations by many GD steps, drawing xi
from the same stream STREAM_LANGEVIN as :class:`negd.Langevin` with the rule's roundings, so only the
gradient's summation order differs from the torch path (float64 trajectories agree to ~1e-13).

Cost, measured on the paper's finite-beta network (1-256-1 tanh, 1000 points, float32, one thread of
the 2-core AMD EPYC, per CPU-second; benchmarks/results-twin-speed.md): neuroevolution's fused kernel
9,900 realization-steps/s; the Langevin twin 6,300/s with the fused kernel (1.6x NE's cost: a gradient
is a forward and a backward pass), 5,400/s stepping Langevin.step on the kernel gradient (the
moment-matched twin's path), 640/s by batched torch backprop (torch's float32 tanh is slow here),
1,550/s by this module's former hand-written 1-W-1 path (with the kernel's tanh) and 280/s by autograd.
On the deep 8x32 net: NE 3,500/s, fused twin 1,100/s (3.1x), torch backprop and autograd ~400/s.
"""

from __future__ import annotations

import math

from torch import Tensor

from negd.kernels import MLPData
from negd.kernels.gradient import covers_gradient, mlp_value_and_grad
from negd.losses import backprop
from negd.losses.base import value_and_grad
from negd.losses.mlp import MLPLoss
from negd.rules import Langevin

__all__ = ["TwinLoss", "langevin_twin_rule", "langevin_noise_per_gd_step"]


def langevin_noise_per_gd_step(sigma: float, lam: float) -> float:
    """s_gd = sigma / sqrt(lambda): NE's noise variance sigma^2 per NE step = lambda GD steps."""
    return sigma / math.sqrt(lam)


def langevin_twin_rule(alpha: float, sigma: float, lam: float) -> Langevin:
    """x <- x - alpha grad U + (sigma / sqrt(lambda)) xi per GD step (module docstring)."""
    return Langevin(alpha=alpha, noise=langevin_noise_per_gd_step(sigma, lam))


class TwinLoss:
    """An :class:`MLPLoss` with a closed-form ``value_and_grad`` (module docstring)."""

    def __init__(self, loss_fn: MLPLoss) -> None:
        self.loss_fn = loss_fn
        self.n_params = loss_fn.n_params
        # The gradient without autograd: the network and loss backprop.covers (the kernel covers the same).
        self.fast = backprop.covers(loss_fn.spec, loss_fn.loss)

    def __call__(self, params: Tensor) -> Tensor:
        return self.loss_fn(params)

    def kernel_grad_data(self, params: Tensor) -> MLPData | None:
        """The gradient kernel's layout of this loss for ``params``, or None where the kernel does not
        take them (its backend "torch", no compiler, not float32/float64 on CPU, not covered)."""
        if not self.fast:
            return None
        data = self.loss_fn.kernel_data(params)
        return data if data is not None and covers_gradient(data) else None

    def value_and_grad(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """Losses [R] float64 and gradients [R, N]: the kernel, else torch backprop, else autograd."""
        data = self.kernel_grad_data(params)
        if data is not None:
            out = mlp_value_and_grad(data, params)
            if out is not None:
                return out
        if not self.fast:
            return value_and_grad(self.loss_fn, params)
        loss_fn = self.loss_fn
        return backprop.mlp_value_and_grad(loss_fn.spec, loss_fn.inputs, loss_fn.targets, params)
