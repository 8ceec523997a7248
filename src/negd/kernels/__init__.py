"""C kernels on plain CPU tensors: MLP losses, fused neuroevolution steps, counter-based normals.

Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021): each neuroevolution step mutates
every parameter, x' = x + sigma xi, and accepts with probability min(1, exp(-beta dU)).
:func:`fused_neuroevolution` runs many such steps of an ensemble of MLPs entirely in C
(``negd_kernels.c``, forward pass in ``negd_mlp.h``), parallel over realizations with OpenMP. It
draws the random numbers of :mod:`negd.rng` bit for bit and applies the acceptance test of
:func:`negd.rules.metropolis_accept` on float64 losses (see docs/kernels.md).

This package is a leaf: it knows tensors, not rules, states or losses. Deciding when the fused
kernel fits a rule, a loss and a state is :func:`negd.engine.fused_step_fn`'s job.

MLPs: hidden layers of one activation (:data:`ACTIVATIONS`: tanh, relu, exact erf GELU, identity),
a linear output; loss (:data:`LOSSES`) the mean squared error or the softmax cross-entropy against
class labels (per point ``logsumexp(z) - z_y``, as :mod:`negd.losses.classification`).
Parameters may be float32
or float64; the forward pass runs in that type and the loss is always summed and returned in float64.

Gradient dynamics (loss and gradient by backpropagation, fused Langevin steps) are in
:mod:`negd.kernels.gradient`.

Environment: ``NEGD_DISABLE_KERNELS=1`` turns the kernels off, ``NEGD_KERNEL`` picks the library
(auto: the prebuilt one of a wheel, else the first-use native build; native; prebuilt: see
:mod:`negd.kernels.build`), ``NEGD_CACHE`` moves the build cache, ``CC`` picks the compiler.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch
from torch import Tensor

from negd.kernels.build import kernels_disabled, load_library
from negd.validation import NegdError

__all__ = ["available", "MLPData", "mlp_data", "mlp_loss", "fused_neuroevolution", "FusedResult",
           "normal", "uniform", "tanh", "activation", "erf", "kernels_disabled", "KERNEL_DTYPES",
           "ACTIVATIONS", "LOSSES"]

_VECTOR = 8  # points are padded to a multiple of the AVX2 float32 width (and so of the float64 one)
KERNEL_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
# Codes of the hidden activations and losses (ACT_* and LOSS_* of negd_kernels.c).
ACTIVATIONS = {"identity": 0, "tanh": 1, "relu": 2, "gelu": 3}
LOSSES = {"mse": 0, "cross_entropy": 1}
_OP_ERF = len(ACTIVATIONS)  # negd_elementwise's extra op

# Return codes of the kernel's counter checks (negd_kernels.c); 1 is "out of memory".
_OUT_OF_MEMORY = 1
_COUNTER_ERRORS = {2: ("realization", "2^44"), 3: ("step", "2^44"), 4: ("stream", "2^8")}
_BAD_ARCH = 5  # an activation, loss or op code the compiled library does not know


def _raise_counter_error(code: int, what: str) -> None:
    if code == _OUT_OF_MEMORY:
        raise MemoryError(f"negd kernel: out of memory in {what}")
    if code == _BAD_ARCH:
        raise RuntimeError(f"negd kernel: unknown activation, loss or op code in {what} (stale build?)")
    if code in _COUNTER_ERRORS:
        name, limit = _COUNTER_ERRORS[code]
        raise NegdError(f"{name}: must be an integer in [0, {limit}) (Philox counter range of negd.rng)")
    if code:
        raise RuntimeError(f"negd kernel: error {code} in {what}")


def available() -> bool:
    """Whether the C kernels can be used in this process."""
    return load_library() is not None


def _ptr(t: Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _feature_major(x: Tensor, dtype: torch.dtype) -> tuple[Tensor, int]:
    """[P, F] -> zero-padded [F, ld] of ``dtype`` (ld a multiple of the vector width) and ld."""
    p = x.shape[0]
    ld = -(-p // _VECTOR) * _VECTOR
    out = torch.zeros(x.shape[1], ld, dtype=dtype)
    out[:, :p] = x.detach().to(device="cpu", dtype=dtype).t()
    return out, ld


@dataclass(frozen=True)
class MLPData:
    """An MLP, its loss and its data laid out for the kernel, in one parameter dtype.

    ``arch`` is (depth, width, in_features, out_features, output_bias) of
    :class:`negd.losses.models.MLPSpec`, then the codes of the activation and the loss; inputs and
    targets are stored feature-major and padded (class labels as one row of the parameter dtype,
    exact for fewer than 2^24 classes).
    """

    arch: Tensor  # int32 [7]
    n_params: int
    n_points: int
    ld: int
    x: Tensor
    t: Tensor
    dtype: torch.dtype

    @property
    def suffix(self) -> str:
        return KERNEL_DTYPES[self.dtype]


def _checked_labels(labels: Tensor, n_classes: int, n_points: int) -> Tensor:
    """Class labels [P] (integer, in 0 .. n_classes - 1) as a column [P, 1] (one target feature)."""
    if labels.dim() != 1 or labels.shape[0] != n_points or labels.is_floating_point() or labels.is_complex():
        raise NegdError(f"targets: cross_entropy needs integer class labels [{n_points}], got "
                        f"{labels.dtype} {list(labels.shape)}")
    if n_classes >= 2**24:
        raise NegdError(f"out_features: the kernel takes fewer than 2^24 classes, got {n_classes}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise NegdError(f"targets: labels must be in 0..{n_classes - 1} for {n_classes} classes, got values "
                        f"in {int(labels.min())}..{int(labels.max())}")
    return labels.reshape(-1, 1)


def mlp_data(arch: tuple[int, int, int, int, bool], n_params: int, inputs: Tensor, targets: Tensor,
             dtype: torch.dtype, *, activation: str = "tanh", loss: str = "mse") -> MLPData:
    """Lay out ``inputs`` [P, in] and the targets for the kernel of parameter ``dtype``.

    ``arch``: (depth, width, in_features, out_features, output_bias). ``activation``: a key of
    :data:`ACTIVATIONS`. ``loss`` "mse": ``targets`` [P, out] floats; "cross_entropy": ``targets``
    class labels [P] of an integer dtype (int32 or int64) in 0 .. out - 1.
    """
    if dtype not in KERNEL_DTYPES:
        raise NegdError(f"dtype: the kernels take float32 or float64 parameters, got {dtype}")
    if activation not in ACTIVATIONS:
        raise NegdError(f"activation: the kernels take {', '.join(ACTIVATIONS)}, got {activation!r}")
    if loss not in LOSSES:
        raise NegdError(f"loss: the kernels take {', '.join(LOSSES)}, got {loss!r}")
    x, ld = _feature_major(inputs, dtype)
    if loss == "cross_entropy":
        targets = _checked_labels(targets, int(arch[3]), inputs.shape[0])
    t, _ = _feature_major(targets, dtype)
    codes = [int(a) for a in arch] + [ACTIVATIONS[activation], LOSSES[loss]]
    return MLPData(torch.tensor(codes, dtype=torch.int32), n_params, inputs.shape[0], ld, x, t, dtype)


def fits(params: Tensor, data: MLPData) -> bool:
    """Whether ``params`` [R, N] can go to the kernel of ``data``: CPU, its dtype, no gradient needed."""
    return (params.device.type == "cpu" and params.dtype == data.dtype and params.dim() == 2
            and params.shape[1] == data.n_params and not (params.requires_grad and torch.is_grad_enabled()))


def mlp_loss(data: MLPData, params: Tensor) -> Tensor | None:
    """Loss [R] float64 of the MLP of ``data`` for each row of ``params`` [R, N], or None.

    None when the kernel is unavailable or ``params`` does not fit it (:func:`fits`).
    """
    lib = load_library()
    if lib is None or not fits(params, data):
        return None
    params = params.detach().contiguous()
    out = torch.empty(params.shape[0], dtype=torch.float64)
    fn = getattr(lib, f"negd_mlp_loss_{data.suffix}")
    err = fn(_ptr(data.arch), data.n_points, data.ld, _ptr(data.x), _ptr(data.t), _ptr(params),
             params.shape[0], params.shape[1], _ptr(out), _threads())
    _raise_counter_error(err, "mlp_loss")
    return out


@dataclass(frozen=True)
class FusedResult:
    """Outcome of :func:`fused_neuroevolution`: new params and float64 losses, the last step's
    acceptance and tie [R] bool, and per realization the accepted moves and the exact ties dU == 0
    [R] int64 of the whole call."""

    params: Tensor
    loss: Tensor
    accepted: Tensor
    tied: Tensor
    counts: Tensor
    ties: Tensor


def fused_neuroevolution(data: MLPData, params: Tensor, loss: Tensor, accepted: Tensor, tied: Tensor,
                         realization: Tensor,
                         *, seed: int, step: int, steps: int, sigma: Tensor, beta: float) -> FusedResult:
    """``steps`` neuroevolution steps of every row of ``params`` [R, N] from counter ``step``.

    ``sigma``: [1] or [N] mutation scales; ``beta``: inverse temperature (inf: accept iff dU <= 0).
    Inputs are not modified. Raises RuntimeError when the kernel is unavailable.
    """
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    r, n = params.shape
    params = params.detach().to(data.dtype).contiguous().clone()
    loss = loss.detach().to(torch.float64).contiguous().clone()
    accepted = accepted.to(torch.uint8).contiguous().clone()
    tied = tied.to(torch.uint8).contiguous().clone()
    realization = realization.to(torch.int64).contiguous()
    sigma = sigma.to(data.dtype).reshape(-1).contiguous()
    counts = torch.zeros(r, dtype=torch.int64)
    ties = torch.zeros(r, dtype=torch.int64)
    fn = getattr(lib, f"negd_fused_ne_{data.suffix}")
    err = fn(_ptr(data.arch), data.n_points, data.ld, _ptr(data.x), _ptr(data.t), _ptr(params), _ptr(loss),
             _ptr(accepted), _ptr(tied), _ptr(counts), _ptr(ties), _ptr(realization), r, n, seed, step,
             int(steps), _ptr(sigma), sigma.numel(), float(beta), _threads())
    _raise_counter_error(err, "fused_ne")
    return FusedResult(params, loss, accepted.to(torch.bool), tied.to(torch.bool), counts, ties)


def _counters(realizations: Tensor, step: int | Tensor) -> tuple[Tensor, Tensor]:
    """Realization ids [R] and steps ([1] or [R]) as contiguous int64 CPU tensors."""
    rid = realizations.detach().to(device="cpu", dtype=torch.int64).reshape(-1).contiguous()
    if isinstance(step, Tensor):
        steps = step.detach().to(device="cpu", dtype=torch.int64).reshape(-1).contiguous()
        if steps.numel() not in (1, rid.numel()):
            raise NegdError(f"step: a tensor of steps must have 1 or R = {rid.numel()} entries, got "
                            f"{steps.numel()}")
    else:
        steps = torch.tensor([step], dtype=torch.int64)
    return rid, steps


def normal(seed: int, realizations: Tensor, step: int | Tensor, n: int, stream: int = 0) -> Tensor:
    """The kernel's normals [R, n], bit for bit :func:`negd.rng.normal_reference`.

    ``step``: one int, or an int tensor with one step per realization. Counters out of the range
    of :mod:`negd.rng` raise NegdError. Parallel over realizations (torch's thread count).
    """
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    rid, steps = _counters(realizations, step)
    out = torch.empty(rid.shape[0], n, dtype=torch.float32)
    err = lib.negd_normal_rows(seed, _ptr(rid), rid.shape[0], _ptr(steps), steps.numel(), n, stream,
                               _ptr(out), _threads())
    _raise_counter_error(err, "normal")
    return out


def uniform(seed: int, realizations: Tensor, step: int | Tensor, stream: int = 1) -> Tensor:
    """The kernel's uniforms [R] float64, bit for bit :func:`negd.rng.uniform_reference`."""
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    rid, steps = _counters(realizations, step)
    out = torch.empty(rid.shape[0], dtype=torch.float64)
    err = lib.negd_uniform_rows(seed, _ptr(rid), rid.shape[0], _ptr(steps), steps.numel(), stream, _ptr(out))
    _raise_counter_error(err, "uniform")
    return out


def _as_kernel_dtype(x: Tensor) -> Tensor:
    """``x`` contiguous in float32 or float64 (its own dtype if one of them, else float32)."""
    return x.to(x.dtype if x.dtype in KERNEL_DTYPES else torch.float32).contiguous()


def tanh(x: Tensor) -> Tensor:
    """The kernel's tanh in the dtype of ``x`` (float32, or float64; anything else as float32)."""
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    x = _as_kernel_dtype(x)
    y = torch.empty_like(x)
    getattr(lib, f"negd_tanh_{KERNEL_DTYPES[x.dtype]}")(_ptr(x), _ptr(y), x.numel())
    return y


def _elementwise(op: int, x: Tensor) -> Tensor:
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    x = _as_kernel_dtype(x)
    y = torch.empty_like(x)
    fn = getattr(lib, f"negd_elementwise_{KERNEL_DTYPES[x.dtype]}")
    _raise_counter_error(fn(op, _ptr(x), _ptr(y), x.numel()), "elementwise")
    return y


def activation(name: str, x: Tensor) -> Tensor:
    """The kernel's hidden-layer activation ``name`` (:data:`ACTIVATIONS`) of ``x``, dtype as :func:`tanh`."""
    if name not in ACTIVATIONS:
        raise NegdError(f"activation: the kernels take {', '.join(ACTIVATIONS)}, got {name!r}")
    return _elementwise(ACTIVATIONS[name], x)


def erf(x: Tensor) -> Tensor:
    """The kernel's erf (used by its GELU) of ``x``, dtype as :func:`tanh`."""
    return _elementwise(_OP_ERF, x)

