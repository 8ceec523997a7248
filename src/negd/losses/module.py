"""The batched loss of any ``nn.Module``: params [R, N] -> losses [R].

:class:`ModuleLoss` evaluates R flat parameter vectors of one model: sequential models of Linear,
Conv1d/2d, activations, Flatten and pooling layer by layer on all realizations at once
(:mod:`negd.losses.sequential`), anything else by ``torch.func.functional_call`` of the module on
each row, vectorized over rows by ``torch.func.vmap``. Losses are reduced in float64, as in
:mod:`negd.losses.mlp`. :func:`loss_for` picks the fastest exact loss for a model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from negd.losses.classification import LOSSES, check_classifier_targets, cross_entropy_unchecked
from negd.losses.mlp import MLPLoss, _check_params, _chunked, mse
from negd.losses.models import MLPSpec
from negd.losses.sequential import compile_sequential
from negd.validation import NegdError, check_data, check_int

__all__ = ["ModuleLoss", "loss_for"]


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
    [P], the model's outputs logits [P, C]; reduced in float64,
    :mod:`negd.losses.classification`), or a callable
    ``loss(pred, target)`` of one network's predictions that reduces to a scalar.

    Evaluation: an ``nn.Sequential`` of layers with a known batched form (Linear, Conv1d/2d,
    activations, Flatten, pooling) runs all realizations of a chunk layer by layer, convolutions
    as one grouped convolution (:mod:`negd.losses.sequential`); any other model, or a callable loss, runs
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
        check_data("inputs", inputs)
        if isinstance(targets, Tensor) or isinstance(loss, str):
            check_data("targets", targets)
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
