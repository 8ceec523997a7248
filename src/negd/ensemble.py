"""Batched loss of R realizations of one architecture: params [R, N] -> losses [R].

Two implementations of the same function:

* :class:`ModuleLoss` works for any ``nn.Module``: ``torch.func.functional_call`` of the
  module on each row of the flat parameters, vectorized over rows by ``torch.func.vmap``;
* :class:`MLPLoss` is the fast path for the tanh MLPs of :class:`negd.models.MLPSpec`:
  batched matrix products, and on CPU optionally the fused C kernel of :mod:`negd.kernels`.

Both evaluate in chunks of at most ``chunk_size`` realizations so that memory stays bounded;
chunking does not change any realization's result. Both return float64 losses: the forward pass
runs in the parameters' dtype (float32 is fine) and the squared errors are summed in float64, so
that loss differences of small mutations are resolved (a float32 mean of U ~ 0.3 cannot tell
apart two losses closer than ~3e-8, the dU of the paper's smallest mutations).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from negd.models import MLPSpec
from negd.validation import NegdError, check_int

__all__ = ["ModuleLoss", "MLPLoss", "mse", "loss_for"]


def mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over all but the leading (realization) dimension, reduced in float64.

    The squared errors are formed in the prediction's dtype and summed in float64, exactly as the
    C kernel does.
    """
    return ((pred - target) ** 2).flatten(1).to(torch.float64).mean(dim=1)


def _mean_squared_error(pred: Tensor, target: Tensor) -> Tensor:
    return ((pred - target) ** 2).to(torch.float64).mean()


def _check_params(params: Tensor, n: int) -> None:
    if params.dim() != 2 or params.shape[1] != n:
        raise NegdError(f"params: must have shape [R, {n}], got {list(params.shape)}")


def _chunked(fn: Callable[[Tensor], Tensor], params: Tensor, chunk: int) -> Tensor:
    if params.shape[0] <= chunk:
        return fn(params)
    return torch.cat([fn(p) for p in params.split(chunk)])


def _check_deterministic(model: nn.Module) -> None:
    """Refuse layers that make the loss random or mutate buffers in training mode (Dropout,
    BatchNorm): the loss must be a pure function of the parameters, and vmap cannot run them."""
    stateful = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase)
    for name, module in model.named_modules():
        if module.training and isinstance(module, stateful):
            raise NegdError(f"model: {type(module).__name__} layer {name or '(root)'!r} is in training mode, "
                            f"where its output is random or it updates running statistics; call "
                            f"model.eval() before building ModuleLoss")


class ModuleLoss:
    """Loss of any ``nn.Module`` for a batch of flat parameter vectors.

    ``loss(pred, target)`` must reduce per example to a scalar; the default is MSE reduced in
    float64 (a custom loss should reduce in float64 too: see the module docstring). Floating-point
    inputs are cast to the parameters' dtype, so float64 parameters run a float64 forward pass.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                 loss: Callable[[Tensor, Tensor], Tensor] | None = None,
                 chunk_size: int = 1024) -> None:
        _check_deterministic(model)
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.n_params = sum(p.numel() for p in model.parameters())
        self.inputs, self.targets = inputs, targets
        self.loss = loss or _mean_squared_error
        self.chunk_size = check_int("chunk_size", chunk_size)
        self._batched = vmap(self._single)

    def _single(self, flat: Tensor) -> Tensor:
        tensors, pos = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = shape.numel()
            tensors[name] = flat[pos:pos + size].reshape(shape)
            pos += size
        inputs = self.inputs.to(flat.dtype) if self.inputs.is_floating_point() else self.inputs
        pred = functional_call(self.model, tensors, (inputs,))
        return self.loss(pred, self.targets)

    def __call__(self, params: Tensor) -> Tensor:
        _check_params(params, self.n_params)
        return _chunked(self._batched, params, self.chunk_size)


class MLPLoss:
    """MSE of a tanh MLP (:class:`MLPSpec`) for a batch of flat parameter vectors.

    ``backend``: "auto" (default: the C kernel for float32 or float64 parameters on CPU when it
    can be built, batched torch matmuls otherwise, and always torch when a gradient is needed),
    "torch" (batched matmul, any device) or "c" (the kernel, or an error). Losses are float64.
    """

    def __init__(self, spec: MLPSpec, inputs: Tensor, targets: Tensor, chunk_size: int | None = None,
                 backend: str = "auto") -> None:
        if inputs.dim() != 2 or inputs.shape[1] != spec.in_features:
            raise NegdError(f"inputs: must have shape [P, {spec.in_features}], got "
                            f"{list(inputs.shape)}")
        if targets.shape != (inputs.shape[0], spec.out_features):
            raise NegdError(f"targets: must have shape [{inputs.shape[0]}, {spec.out_features}], "
                            f"got {list(targets.shape)}")
        if backend not in ("torch", "auto", "c"):
            raise NegdError(f"backend: must be 'torch', 'auto' or 'c', got {backend!r}")
        self.spec, self.inputs, self.targets = spec, inputs, targets
        self.n_params = spec.n_params
        # Keep the largest activation tensor of a chunk near 32 MB.
        default = max(1, (8 << 20) // max(1, inputs.shape[0] * spec.width))
        self.chunk_size = check_int("chunk_size", default if chunk_size is None else chunk_size)
        self.backend = backend
        self._kernel_data: dict[torch.dtype, object] = {}

    @staticmethod
    def from_module(model: nn.Module, inputs: Tensor, targets: Tensor, **kw) -> MLPLoss:
        spec = MLPSpec.from_module(model)
        if spec is None:
            raise NegdError("model: MLPLoss needs an nn.Sequential of Linear and Tanh layers")
        return MLPLoss(spec, inputs, targets, **kw)

    def _torch(self, params: Tensor) -> Tensor:
        return mse(self.spec.forward(params, self.inputs), self.targets.to(params.dtype))

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
            data = kernels.mlp_data(arch, self.n_params, self.inputs, self.targets, params.dtype)
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


def loss_for(model: nn.Module, inputs: Tensor, targets: Tensor, **kw) -> ModuleLoss | MLPLoss:
    """The fastest exact loss for ``model``: :class:`MLPLoss` when it is a tanh MLP."""
    spec = MLPSpec.from_module(model)
    if spec is not None:
        return MLPLoss(spec, inputs, targets, **kw)
    return ModuleLoss(model, inputs, targets, **kw)
