"""The fast batched loss of MLPs: params [R, N] -> losses [R] for the networks of :class:`MLPSpec`.

:class:`MLPLoss` evaluates R realizations with batched matrix products, and on the CPU with the
fused C kernel of :mod:`negd.kernels` when it fits (same numbers to float64 rounding of the sums).
The loss is the mean squared error (:func:`mse`) or the softmax cross-entropy, reduced in float64:
the forward pass runs in the parameters' dtype (float32 is fine) and the per-example losses are
summed in float64, so that loss differences of small mutations are resolved (a float32 mean of
U ~ 0.3 cannot tell apart two losses closer than ~3e-8, the dU of the paper's smallest mutations).
Evaluation runs in chunks of at most ``chunk_size`` realizations so that memory stays bounded;
chunking does not change any realization's result. Any other ``nn.Module``:
:class:`negd.losses.module.ModuleLoss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from negd.kernels import ACTIVATIONS as KERNEL_ACTIVATIONS
from negd.kernels import LOSSES as KERNEL_LOSSES
from negd.losses.classification import LOSSES, check_classifier_targets, cross_entropy_unchecked
from negd.losses.models import MLPSpec
from negd.validation import NegdError, check_data, check_int

__all__ = ["MLPLoss", "mse"]


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all but the leading (realization) dimension, reduced in float64.

    The squared errors are formed in the prediction's dtype and summed in float64, exactly as the
    C kernel does.
    """
    return ((pred - target) ** 2).flatten(1).to(torch.float64).mean(dim=1)


def _check_params(params: Tensor, n: int) -> None:
    if params.dim() != 2 or params.shape[1] != n:
        raise NegdError(f"params: must have shape [R, {n}], got {list(params.shape)}")


def _chunked(fn: Callable[[Tensor], Tensor], params: Tensor, chunk: int) -> Tensor:
    if params.shape[0] <= chunk:
        return fn(params)
    return torch.cat([fn(p) for p in params.split(chunk)])


class MLPLoss:
    """Loss of an MLP (:class:`MLPSpec`) for a batch of flat parameter vectors.

    ``loss``: "mse" (targets [P, out] float) or "cross_entropy" (targets: class labels [P] in
    0 .. out - 1; softmax cross-entropy reduced in float64, :mod:`negd.losses.classification`).
    Losses are float64.

    ``backend``: "auto" (default: the C kernel where it covers the model, i.e. every activation of
    :data:`negd.kernels.ACTIVATIONS` with either loss, float32 or float64 parameters on CPU, and it
    can be built; elsewhere batched torch matmuls, with the kernel's tanh for float32 tanh networks
    on CPU; always pure torch when a gradient is needed), "torch" (batched matmul, torch's own
    functions, any device) or "c" (the kernel, or an error). ``self.backend`` is the resolved
    choice: a model the kernel does not cover resolves "auto" to "torch", so that no fused path
    runs it.
    """

    def __init__(self, spec: MLPSpec, inputs: Tensor, targets: Tensor, chunk_size: int | None = None,
                 backend: str = "auto", loss: str = "mse") -> None:
        check_data("inputs", inputs)
        check_data("targets", targets)
        if inputs.dim() != 2 or inputs.shape[1] != spec.in_features:
            raise NegdError(f"inputs: must have shape [P, {spec.in_features}], got "
                            f"{list(inputs.shape)}")
        if loss not in LOSSES:
            raise NegdError(f"loss: must be one of {', '.join(LOSSES)}, got {loss!r}")
        if loss == "mse" and targets.shape != (inputs.shape[0], spec.out_features):
            raise NegdError(f"targets: must have shape [{inputs.shape[0]}, {spec.out_features}], "
                            f"got {list(targets.shape)}")
        if loss == "cross_entropy":
            targets = check_classifier_targets(targets, spec.out_features, inputs.shape[0])
        if backend not in ("torch", "auto", "c"):
            raise NegdError(f"backend: must be 'torch', 'auto' or 'c', got {backend!r}")
        kernel_covers = spec.activation in KERNEL_ACTIVATIONS and loss in KERNEL_LOSSES
        if backend == "c" and not kernel_covers:
            raise NegdError(f"backend: 'c' covers MLPs with {', '.join(KERNEL_ACTIVATIONS)} activations and "
                            f"the {' or '.join(KERNEL_LOSSES)} loss, not {spec.activation} with {loss}; use "
                            f"'auto' or 'torch'")
        self.spec, self.inputs, self.targets, self.loss = spec, inputs, targets, loss
        self.n_params = spec.n_params
        # Keep the largest activation tensor of a chunk near 32 MB.
        widest = max(spec.width, spec.out_features)
        default = max(1, (8 << 20) // max(1, inputs.shape[0] * widest))
        self.chunk_size = check_int("chunk_size", default if chunk_size is None else chunk_size)
        self.backend = backend if kernel_covers else "torch"
        self._kernel_tanh = backend == "auto" and spec.activation == "tanh"
        self._inputs_t = inputs.t().contiguous()  # feature-major [in, P] (MLPSpec.forward_t)
        self._kernel_data: dict[torch.dtype, object] = {}

    @staticmethod
    def from_module(model: nn.Module, inputs: Tensor, targets: Tensor, **kw) -> MLPLoss:
        spec = MLPSpec.from_module(model)
        if spec is None:
            raise NegdError("model: MLPLoss needs an nn.Sequential of Linear layers and one kind of "
                            "activation (Tanh, ReLU, GELU, Identity), optionally after a Flatten")
        return MLPLoss(spec, inputs, targets, **kw)

    def _activation(self, params: Tensor):
        """The kernel's float32 tanh where "auto" allows it (5x torch's on this CPU), else None."""
        if not (self._kernel_tanh and params.dtype == torch.float32 and params.device.type == "cpu"
                and not (params.requires_grad and torch.is_grad_enabled())):
            return None
        from negd import kernels  # late import: the kernel is built on first use

        return kernels.tanh if kernels.available() else None

    def _torch(self, params: Tensor) -> Tensor:
        if self.loss == "cross_entropy":
            logits = self.spec.forward_t(params, self._inputs_t, self._activation(params))  # [R, C, P]
            return cross_entropy_unchecked(logits, self.targets, class_dim=-2)
        return mse(self.spec.forward(params, self.inputs, self._activation(params)),
                   self.targets.to(params.dtype))

    def kernel_data(self, params: Tensor):
        """The kernel's layout of this loss (:class:`negd.kernels.MLPData`) for ``params``, or None.

        None when the backend is "torch", the kernel is unavailable, or ``params`` do not fit it
        (not float32/float64 on CPU, or they need a gradient).
        """
        if self.backend == "torch" or params.dtype not in (torch.float32, torch.float64):
            return None
        from negd import kernels  # late import: the kernel is built on first use

        if not kernels.available():
            return None
        data = self._kernel_data.get(params.dtype)
        if data is None:
            spec = self.spec
            arch = (spec.depth, spec.width, spec.in_features, spec.out_features, spec.output_bias)
            data = kernels.mlp_data(arch, self.n_params, self.inputs, self.targets, params.dtype,
                                    activation=spec.activation, loss=self.loss)
            self._kernel_data[params.dtype] = data
        return data if kernels.fits(params, data) else None

    def __call__(self, params: Tensor) -> Tensor:
        _check_params(params, self.n_params)
        data = self.kernel_data(params)
        if data is not None:
            from negd import kernels

            return kernels.mlp_loss(data, params)
        if self.backend == "c" and not params.requires_grad:
            raise NegdError("backend: 'c' needs float32 or float64 parameters on the CPU and a buildable "
                            "kernel; use 'auto' to fall back to torch")
        return _chunked(self._torch, params, self.chunk_size)
