"""Loss and gradient of MLP ensembles with the mean squared error, by closed-form backpropagation in torch.

For R realizations of one :class:`negd.losses.models.MLPSpec` network at once (batched matrix products over a
block of realizations), no autograd graph. With a_0 = x, a_l = act(W_l a_{l-1} + b_l) for the depth
hidden layers, f = W_L a_{L-1} + b_L, and U = 1/(P O) sum_p sum_o (f_po - y_po)^2 over P points and O
outputs::

    delta_L = 2 (f - y) / (P O)                        dU/df
    dU/dW_l = delta_l^T a_{l-1},   dU/db_l = sum_p delta_l
    delta_{l-1} = (delta_l W_l) * act'(a_{l-1})

with act' written in terms of the activation's output (tanh: 1 - a^2, relu: [a > 0], identity: 1;
:data:`DERIVATIVES`). The forward pass is :meth:`MLPSpec.forward`'s and the loss
:func:`negd.losses.mlp.mse`'s (float64), so the loss equals :class:`negd.losses.mlp.MLPLoss`'s torch path
bit for bit. This is the fallback of :class:`negd.experiments.run.twin.TwinLoss` where the C kernel
(:mod:`negd.kernels.gradient`, the same equations) is unavailable or the parameters are not on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from negd.losses.models import ACTIVATIONS, MLPSpec

__all__ = ["DERIVATIVES", "covers", "mlp_value_and_grad"]

# act'(a) as a function of the activation's output a.
DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": lambda a: 1 - a * a,
    "relu": lambda a: (a > 0).to(a.dtype),
    "identity": lambda a: torch.ones_like(a),
}

# One activation tensor [block, P, width] of a block of realizations (bytes): the L2 of one core here.
# Measured, one thread, float32, 16 realizations: the deep 8x32 net (128 KB per realization and layer) at
# blocks of 1/2/4/8/16: 299/397/495/460/429 realization-steps/s, autograd 457; the 1-256-1 net (1 MB):
# 645/493/487/427/313, autograd 436.
_BLOCK_BYTES = 512 << 10


def covers(spec: MLPSpec, loss: str) -> bool:
    """Whether :func:`mlp_value_and_grad` takes this network and loss (mse; an activation of DERIVATIVES)."""
    return loss == "mse" and spec.activation in DERIVATIVES


def _block_size(spec: MLPSpec, n_points: int, itemsize: int) -> int:
    widest = max(spec.width, spec.out_features, spec.in_features)
    return max(1, _BLOCK_BYTES // max(1, n_points * widest * itemsize))


def _affine(h: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
    """h W^T + b for h [c, P, in], W [c, out, in], b [c, out]. One input (the paper's nets): a broadcast
    multiply-add, one pass over [c, P, out] (baddbmm would first copy the bias into the output)."""
    if h.shape[2] == 1:
        return h * w.transpose(1, 2) if b is None else torch.addcmul(b.unsqueeze(1), h, w.transpose(1, 2))
    if b is None:
        return torch.bmm(h, w.transpose(1, 2))
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


def _back_error(g: Tensor, a: Tensor, activation: str) -> Tensor:
    """g act'(a), with ATen's fused backward of tanh and relu (one pass over [c, P, width], where the
    formula of DERIVATIVES takes three: measured 4x faster on the deep 8x32 net)."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(g, a)
    if activation == "relu":
        return torch.ops.aten.threshold_backward(g, a, 0)
    return g * DERIVATIVES[activation](a)


def _block_value_and_grad(spec: MLPSpec, x: Tensor, y: Tensor, q: Tensor, grad: Tensor) -> Tensor:
    """Losses [c] float64 of the rows ``q`` [c, N], their gradients written into ``grad`` [c, N]."""
    act = ACTIVATIONS[spec.activation][1]
    c = q.shape[0]
    layers = list(zip(spec.layer_sizes, spec.slices()))
    h = x.unsqueeze(0).expand(c, -1, -1)
    inputs, weights = [], []  # each layer's input a_{l-1} [c, P, in] and weight W_l [c, out, in]
    for k, ((i, o, _), (ws, bs)) in enumerate(layers):
        w = q[:, ws].reshape(c, o, i)
        inputs.append(h)
        weights.append(w)
        h = _affine(h, w, q[:, bs] if bs is not None else None)
        if k < spec.depth:
            h = act(h)
    res = h - y  # [c, P, O]
    loss = res.square().flatten(1).to(torch.float64).mean(dim=1)  # as negd.losses.mlp.mse
    delta = res * (2.0 / (res.shape[1] * res.shape[2]))
    for k in range(len(layers) - 1, -1, -1):
        (_, _, _), (ws, bs) = layers[k]
        grad[:, ws] = torch.bmm(delta.transpose(1, 2), inputs[k]).reshape(c, -1)
        if bs is not None:
            grad[:, bs] = delta.sum(dim=1)
        if k > 0:
            delta = _back_error(torch.bmm(delta, weights[k]), inputs[k], spec.activation)
    return loss


def mlp_value_and_grad(spec: MLPSpec, inputs: Tensor, targets: Tensor, params: Tensor,
                       block: int | None = None) -> tuple[Tensor, Tensor]:
    """Losses [R] float64 and gradients [R, N] (dtype of ``params``) of every row of ``params`` [R, N].

    ``inputs`` [P, in], ``targets`` [P, out]; the network must be covered (:func:`covers`). ``block``:
    realizations per batched pass (default: activations of a few MB); it does not change any result.
    """
    params = params.detach()
    x = inputs.to(device=params.device, dtype=params.dtype)
    y = targets.to(device=params.device, dtype=params.dtype)
    if block is None:
        block = _block_size(spec, x.shape[0], params.element_size())
    loss = torch.empty(params.shape[0], dtype=torch.float64, device=params.device)
    grad = torch.empty_like(params)
    for start in range(0, params.shape[0], block):
        stop = start + block
        loss[start:stop] = _block_value_and_grad(spec, x, y, params[start:stop], grad[start:stop])
    return loss, grad
