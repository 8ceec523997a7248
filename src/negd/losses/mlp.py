"""Batched loss of R realizations of one architecture: params [R, N] -> losses [R].

Two implementations of the same function:

* :class:`ModuleLoss` works for any ``nn.Module``: ``torch.func.functional_call`` of the
  module on each row of the flat parameters, vectorized over rows by ``torch.func.vmap``;
* :class:`MLPLoss` is the fast path for the MLPs of :class:`negd.models.MLPSpec`:
  batched matrix products, and on CPU optionally the fused C kernel of :mod:`negd.kernels`.

Both evaluate in chunks of at most ``chunk_size`` realizations so that memory stays bounded;
chunking does not change any realization's result. Both return float64 losses: the forward pass
runs in the parameters' dtype (float32 is fine) and the squared errors are summed in float64, so
that loss differences of small mutations are resolved (a float32 mean of U ~ 0.3 cannot tell
apart two losses closer than ~3e-8, the dU of the paper's smallest mutations).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from negd.kernels import ACTIVATIONS as KERNEL_ACTIVATIONS
from negd.kernels import LOSSES as KERNEL_LOSSES
from negd.losses import LOSSES, check_classifier_targets, cross_entropy_unchecked
from negd.models import MLPSpec
from negd.sequential import compile_sequential
from negd.validation import NegdError, check_int

__all__ = ["ModuleLoss", "MLPLoss", "mse", "loss_for"]


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

    ``loss``: "mse" (default; targets [P, *output shape]), "cross_entropy" (targets: class labels
    [P], the model's outputs logits [P, C]; reduced in float64, :mod:`negd.losses`), or a callable
    ``loss(pred, target)`` of one network's predictions that reduces to a scalar.

    Evaluation: an ``nn.Sequential`` of layers with a known batched form (Linear, Conv1d/2d,
    activations, Flatten, pooling) runs all realizations of a chunk layer by layer, convolutions
    as one grouped convolution (:mod:`negd.sequential`); any other model, or a callable loss, runs
    ``torch.func.functional_call`` vectorized by ``vmap``. ``compile=True`` wraps the evaluation
    of a chunk in ``torch.compile`` (slow first call; falls back to eager with a warning where no
    compiler works). ``chunk_size`` (realizations per evaluation) defaults to what keeps the
    largest activation of a chunk near 6 MB (small enough to stay in cache and reuse the
    allocator's pages: on the digits CNN at R = 32 chunks of 2 realizations were 10-25% faster
    than 6 and 2x faster than 12, measured), found by one probe forward pass, which also
    checks inputs, outputs and targets (one-line errors naming the argument). Losses are float64
    (the default mse too; a custom loss should reduce in float64, see the module docstring);
    floating-point inputs are cast to the parameters' dtype.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                 loss: str | Callable[[Tensor, Tensor], Tensor] | None = "mse",
                 chunk_size: int | None = None, compile: bool = False) -> None:
        _check_deterministic(model)
        self.model = model
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for _, p in model.named_parameters()]
        self.n_params = sum(p.numel() for p in model.parameters())
        loss = "mse" if loss is None else loss
        if not callable(loss) and loss not in LOSSES:
            raise NegdError(f"loss: must be one of {', '.join(LOSSES)} or a callable, got {loss!r}")
        widest, out = _probe(model, inputs)
        if loss == "cross_entropy":
            targets = _check_logit_outputs(out, inputs, targets)
        elif loss == "mse":
            _check_regression_targets(out, inputs, targets)
        self.inputs, self.targets, self.loss = inputs, targets, loss
        default = max(1, (6 << 20) // max(1, inputs.shape[0] * widest * inputs.element_size()))
        self.chunk_size = check_int("chunk_size", default if chunk_size is None else chunk_size)
        self.sequential = compile_sequential(model) if isinstance(loss, str) else None
        self._batched = vmap(self._single)
        self._chunk_fn = _compiled(self._evaluate) if compile else self._evaluate

    def _per_network_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.loss == "mse":
            return ((pred - target) ** 2).to(torch.float64).mean()  # summed in float64, as mse()
        if self.loss == "cross_entropy":
            return cross_entropy_unchecked(pred, target)
        return self.loss(pred, target)

    def _single(self, flat: Tensor) -> Tensor:
        tensors, pos = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = shape.numel()
            tensors[name] = flat[pos:pos + size].reshape(shape)
            pos += size
        inputs = self.inputs.to(flat.dtype) if self.inputs.is_floating_point() else self.inputs
        pred = functional_call(self.model, tensors, (inputs,))
        return self._per_network_loss(pred, self.targets)

    def _evaluate(self, params: Tensor) -> Tensor:
        if self.sequential is None:
            return self._batched(params)
        out = self.sequential(params, self.inputs)  # [R, P, ...]
        if self.loss == "mse":
            return mse(out, self.targets.to(out.dtype))
        if out.transpose(1, 2).is_contiguous():  # the last Linear's natural [R, C, P] layout
            return cross_entropy_unchecked(out.transpose(1, 2), self.targets, class_dim=-2)
        return cross_entropy_unchecked(out, self.targets)

    def __call__(self, params: Tensor) -> Tensor:
        _check_params(params, self.n_params)
        return _chunked(self._chunk_fn, params, self.chunk_size)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _probe(model: nn.Module, inputs: Tensor) -> tuple[int, Tensor]:
    """Run ``model`` on the first two examples (two: BatchNorm needs more than one); the largest
    per-example output of any of its layers, and the model's output."""
    if not isinstance(inputs, Tensor) or inputs.dim() < 1 or inputs.shape[0] < 1:
        raise NegdError(f"inputs: must be a tensor [P, ...] with P >= 1 examples, got "
                        f"{list(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__}")
    few = inputs[:2]
    sizes = [few[:1].numel()]
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out[:1].numel())
                                     if isinstance(out, Tensor) and out.dim() > 0 else None)
             for m in model.modules()]
    try:
        with torch.no_grad():
            out = model(few)
    except Exception as err:  # the model's own message, on one line
        raise NegdError(f"inputs: the model cannot take inputs of shape {list(inputs.shape)}: "
                        f"{_first_line(err)}") from None
    finally:
        for h in hooks:
            h.remove()
    if not isinstance(out, Tensor):
        raise NegdError(f"model: must return a tensor, got {type(out).__name__}")
    return max(sizes), out


def _check_logit_outputs(out: Tensor, inputs: Tensor, targets: Tensor) -> Tensor:
    if out.dim() != 2:
        raise NegdError(f"model: for cross_entropy its outputs must be logits [P, C], got shape "
                        f"{[inputs.shape[0], *out.shape[1:]]}")
    return check_classifier_targets(targets, out.shape[1], inputs.shape[0])


def _check_regression_targets(out: Tensor, inputs: Tensor, targets: Tensor) -> None:
    want = [inputs.shape[0], *out.shape[1:]]
    if not isinstance(targets, Tensor) or list(targets.shape) != want:
        got = list(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise NegdError(f"targets: must have the model's output shape {want} for mse, got {got}")


def _compiled(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``torch.compile(fn)``, falling back to ``fn`` with one warning if compiling fails."""
    compiled = torch.compile(fn, dynamic=False)
    state = {"fn": compiled}

    def run(params: Tensor) -> Tensor:
        try:
            return state["fn"](params)
        except Exception as err:  # no working compiler, or an unsupported operation
            if state["fn"] is fn:
                raise
            warnings.warn(f"negd: torch.compile failed, using eager evaluation ({_first_line(err)})",
                          RuntimeWarning, stacklevel=2)
            state["fn"] = fn
            return fn(params)
    return run


class MLPLoss:
    """Loss of an MLP (:class:`MLPSpec`) for a batch of flat parameter vectors.

    ``loss``: "mse" (targets [P, out] float) or "cross_entropy" (targets: class labels [P] in
    0 .. out - 1; softmax cross-entropy reduced in float64, :mod:`negd.losses`). Losses are float64.

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


def loss_for(model: nn.Module, inputs: Tensor, targets: Tensor, **kw) -> ModuleLoss | MLPLoss:
    """The fastest exact loss for ``model``: :class:`MLPLoss` when it is an MLP of
    :class:`MLPSpec`'s form (optionally after a ``Flatten``, which then flattens ``inputs``),
    :class:`ModuleLoss` otherwise. Keyword arguments go to the chosen class (``loss`` to both)."""
    spec = MLPSpec.from_module(model)
    named_loss = kw.get("loss") is None or isinstance(kw["loss"], str)
    if spec is not None and isinstance(inputs, Tensor) and named_loss:
        if inputs.dim() > 2 and isinstance(model[0], nn.Flatten):
            inputs = inputs.flatten(1)
        kw = {k: v for k, v in kw.items() if k != "compile"}
        return MLPLoss(spec, inputs, targets, **{**kw, "loss": kw.get("loss") or "mse"})
    kw = {k: v for k, v in kw.items() if k != "backend"}
    return ModuleLoss(model, inputs, targets, **kw)
