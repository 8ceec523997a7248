"""Fused C kernel for ensemble neuroevolution of tanh MLPs on CPU.

Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021): each step mutates every
parameter, x' = x + sigma xi, and accepts with probability min(1, exp(-beta dU)).
:func:`fused_step_fn` runs many such steps of :class:`negd.rules.Neuroevolution` on an
:class:`negd.ensemble.MLPLoss` entirely in C (``negd_kernels.c``), parallel over realizations
with OpenMP. It draws the same random numbers as :mod:`negd.rng` bit for bit and applies the
same acceptance test as :func:`negd.rules.metropolis_accept`, so it takes the steps of the torch
reference loop up to float rounding of the loss (see docs/kernels.md).

Environment: ``NEGD_DISABLE_KERNELS=1`` turns the kernels off, ``NEGD_CACHE`` moves the build
cache, ``CC`` picks the compiler.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable

import torch
from torch import Tensor

from negd.kernels.build import kernels_disabled, load_library
from negd.models import MLPSpec
from negd.state import State
from negd.validation import NegdError

__all__ = ["available", "fused_step_fn", "mlp_loss", "normal", "uniform", "tanh", "kernels_disabled"]

_VECTOR = 8  # points are padded to a multiple of the AVX2 width


# Return codes of the kernel's counter checks (negd_kernels.c); 1 is "out of memory".
_OUT_OF_MEMORY = 1
_COUNTER_ERRORS = {2: ("realization", "2^44"), 3: ("step", "2^44"), 4: ("stream", "2^8")}


def _raise_counter_error(code: int, what: str) -> None:
    if code == _OUT_OF_MEMORY:
        raise MemoryError(f"negd kernel: out of memory in {what}")
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


def _arch(spec: MLPSpec) -> Tensor:
    return torch.tensor([spec.depth, spec.width, spec.in_features, spec.out_features, int(spec.output_bias)],
                        dtype=torch.int32)


def _feature_major(x: Tensor) -> tuple[Tensor, int]:
    """[P, F] -> zero-padded [F, ld] float32 (ld a multiple of the vector width) and ld."""
    p = x.shape[0]
    ld = -(-p // _VECTOR) * _VECTOR
    out = torch.zeros(x.shape[1], ld, dtype=torch.float32)
    out[:, :p] = x.detach().to(device="cpu", dtype=torch.float32).t()
    return out, ld


def _usable_params(params: Tensor) -> bool:
    return (params.device.type == "cpu" and params.dtype == torch.float32 and params.dim() == 2
            and not (params.requires_grad and torch.is_grad_enabled()))


def mlp_loss(spec: MLPSpec, params: Tensor, inputs: Tensor, targets: Tensor) -> Tensor | None:
    """MSE loss [R] float32 of the tanh MLP ``spec`` for each row of ``params`` [R, N], or None.

    None when the kernel is unavailable or the call does not fit it (params not float32 on CPU,
    or params that need a gradient): the caller then uses the torch path.
    """
    lib = load_library()
    if lib is None or not _usable_params(params) or params.shape[1] != spec.n_params:
        return None
    params = params.detach().contiguous()
    x, ld = _feature_major(inputs)
    t, _ = _feature_major(targets)
    arch = _arch(spec)
    out = torch.empty(params.shape[0], dtype=torch.float32)
    err = lib.negd_mlp_loss(_ptr(arch), inputs.shape[0], ld, _ptr(x), _ptr(t), _ptr(params),
                            params.shape[0], params.shape[1], _ptr(out), _threads())
    if err:
        raise MemoryError("negd kernel: out of memory in mlp_loss")
    return out


def fused_step_fn(rule, state: State, loss_fn) -> Callable[[State, int], tuple[State, Tensor]] | None:
    """A function ``(state, steps) -> (state, accepted_count [R] int64)`` running fused steps, or None.

    Fits when ``rule`` is :class:`negd.rules.Neuroevolution`, ``loss_fn`` an
    :class:`negd.ensemble.MLPLoss` with backend "auto" or "c", and params and loss are float32
    on CPU; None otherwise (the caller then loops ``rule.step``).
    """
    from negd.ensemble import MLPLoss
    from negd.rules import Neuroevolution

    if not isinstance(rule, Neuroevolution) or not isinstance(loss_fn, MLPLoss):
        return None
    if loss_fn.backend not in ("auto", "c") or not _usable_params(state.params):
        return None
    if state.loss.dtype != torch.float32 or state.loss.device.type != "cpu":
        return None
    lib = load_library()
    if lib is None:
        return None
    spec = loss_fn.spec
    n = spec.n_params
    if state.params.shape[1] != n:
        return None
    sigma = torch.as_tensor(rule.sigma, dtype=torch.float32).reshape(-1).contiguous()
    if sigma.numel() not in (1, n):
        return None
    x, ld = _feature_major(loss_fn.inputs)
    t, _ = _feature_major(loss_fn.targets)
    n_points = loss_fn.inputs.shape[0]
    arch = _arch(spec)
    beta = float(rule.beta)

    def run(state: State, steps: int) -> tuple[State, Tensor]:
        r = state.n_realizations
        params = state.params.detach().to(torch.float32).contiguous().clone()
        loss = state.loss.detach().to(torch.float32).contiguous().clone()
        accepted = state.accepted.to(torch.uint8).contiguous().clone()
        realization = state.realization.to(torch.int64).contiguous()
        counts = torch.zeros(r, dtype=torch.int64)
        err = lib.negd_fused_ne(_ptr(arch), n_points, ld, _ptr(x), _ptr(t), _ptr(params), _ptr(loss),
                                _ptr(accepted), _ptr(counts), _ptr(realization), r, n, state.seed,
                                state.step, int(steps), _ptr(sigma), sigma.numel(),
                                math.inf if math.isinf(beta) else beta, _threads())
        _raise_counter_error(err, "fused_ne")
        new = state.replace(params=params, loss=loss, step=state.step + int(steps),
                            accepted=accepted.to(torch.bool))
        return new, counts

    return run


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


def tanh(x: Tensor) -> Tensor:
    """The kernel's float32 tanh (for accuracy tests and benchmarks)."""
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    x = x.to(torch.float32).contiguous()
    y = torch.empty_like(x)
    lib.negd_tanh(_ptr(x), _ptr(y), x.numel())
    return y
