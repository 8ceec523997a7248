"""Counter-based random numbers: Philox4x32-10 and a portable Box-Muller transform.

Every random number negd draws is a pure function of ``(seed, realization, step, stream,
index)`` (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11).
Consequences the rest of the library relies on:

* realization ``r`` sees the same numbers whatever the ensemble size R and however the
  ensemble is chunked, so results do not depend on batch layout;
* the "random generator state" of a run is just ``(seed, step)``: saving and resuming is
  exact by construction;
* the transform from bits to normals uses only IEEE-754 float32 ``+ - * /`` and ``sqrt``
  (our own polynomial ``log``, ``sin`` and ``cos``; no fused multiply-add; ``sqrt`` correctly
  rounded via float64), so the C kernel in
  :mod:`negd.kernels` reproduces these numbers bit for bit.

Normals come from Box-Muller: ``z = sqrt(-2 ln u) * (cos phi, sin phi)``. The angle is drawn in
the first octant (0, pi/4) and mapped onto the whole circle by three random bits (swap the
pair, flip either sign): the eight symmetries of the square carry a uniform angle on an octant
to a uniform angle on the circle, and keep the polynomials on their most accurate range.

Counter layout. Normal number ``4 b + j`` (j = 0..3) of a row comes from Philox block ``b``,
whose 128-bit counter is, in 32-bit words::

    word0 = b                                   (block index within the row)
    word1 = step mod 2^32
    word2 = realization mod 2^32
    word3 = stream | (step >> 32) << 8 | (realization >> 32) << 20

and the key is the 64-bit ``seed``. So ``stream`` < 2^8, ``step`` < 2^44 and ``realization``
< 2^44 (:data:`STREAM_LIMIT`, :data:`STEP_LIMIT`, :data:`REALIZATION_LIMIT`); other values
raise :class:`negd.validation.NegdError`. For step and realization below 2^32 the high words
are zero and the counters, hence the numbers, are those of the original (step, realization,
stream) layout: results and checkpoints made before the high bits were folded in are
unchanged. A uniform is word 0 of block 0 times 2^-32.

Backends. :func:`normal` and :func:`uniform` use the C kernel of :mod:`negd.kernels` (bit for
bit the same numbers, ~30x faster) when the tensors are on CPU and the kernel can be built,
and :func:`normal_reference` / :func:`uniform_reference` (pure torch, any device) otherwise.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negd.validation import NegdError

__all__ = ["STREAM_MUTATION", "STREAM_ACCEPT", "STREAM_INIT", "STREAM_LANGEVIN", "STREAM_PROBE",
           "STREAM_MINIBATCH", "STREAM_CURVATURE", "STREAM_EPISODE",
           "STREAM_MEAN_FIELD", "STREAM_SMOOTHED", "STREAM_MINIBATCH_SECOND",
           "STREAM_LIMIT", "STEP_LIMIT", "REALIZATION_LIMIT", "philox4x32", "counter_words",
           "normal", "uniform", "normal_reference", "uniform_reference"]

# Stream tags keep the uses of randomness apart: a mutation draw never reuses accept bits.
STREAM_MUTATION = 0
STREAM_ACCEPT = 1
STREAM_INIT = 2
STREAM_LANGEVIN = 3
STREAM_PROBE = 4  # diagnostic mutations (negd.diagnostics.resolution): never those of a run
STREAM_MINIBATCH = 8  # minibatch keys (negd.losses.minibatch)
STREAM_CURVATURE = 9  # Hutchinson probes of the curvature-aware twin (negd.twins.curvature)
STREAM_EPISODE = 10  # episode start states of the control tasks (negd.envs)
STREAM_MEAN_FIELD = 11  # proposals of the mean-field twin (negd.twins.mean_field, no gradient)
STREAM_SMOOTHED = 12  # antithetic directions of the smoothed-objective (ES) gradient twin
STREAM_MINIBATCH_SECOND = 13  # second, independent batch of a step ("fresh" noise policy)

# Counter ranges of the layout in the module docstring: word3 = stream (8 bits) | step >> 32
# (12 bits) | realization >> 32 (12 bits).
STREAM_LIMIT = 2**8
STEP_LIMIT = 2**44
REALIZATION_LIMIT = 2**44
_STEP_HIGH_SHIFT = 8
_REALIZATION_HIGH_SHIFT = 20

_MASK32 = 0xFFFFFFFF
_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_ROUNDS = 10


def _mulhilo(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """High and low 32 bits of a * m for a < 2^32 held in int64 (no int64 overflow)."""
    p = a * (m & 0xFFFF)  # < 2^48
    q = a * (m >> 16)  # < 2^48
    s = (p >> 16) + q  # a*m = s * 2^16 + (p & 0xFFFF)
    hi = s >> 16
    lo = ((s & 0xFFFF) << 16) | (p & 0xFFFF)
    return hi, lo


def philox4x32(c0: Tensor, c1: Tensor, c2: Tensor, c3: Tensor, seed: int) -> tuple[Tensor, ...]:
    """Philox4x32-10 of the counter (c0, c1, c2, c3) under the 64-bit key ``seed``.

    Counters are int64 tensors holding values in [0, 2^32) and broadcast together.
    Returns four int64 tensors of 32-bit outputs.
    """
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    c0, c1, c2, c3 = torch.broadcast_tensors(c0, c1, c2, c3)
    for _ in range(_ROUNDS):
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + _W0) & _MASK32, (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


def _f32(x: float, device: torch.device) -> Tensor:
    return torch.tensor(x, dtype=torch.float32, device=device)


def _log_open01(u: Tensor) -> Tensor:
    """ln(u) for float32 u in (0, 1): Cephes ``logf``, written as separate IEEE operations."""
    dev = u.device
    bits = u.view(torch.int32)
    e = (bits >> 23) - 127
    m = ((bits & 0x7FFFFF) | 0x3F800000).view(torch.float32)  # mantissa in [1, 2)
    big = m > _f32(1.41421356, dev)
    m = torch.where(big, m * _f32(0.5, dev), m)
    e = (e + big.to(torch.int32)).to(torch.float32)
    x = m - _f32(1.0, dev)
    z = x * x
    coeffs = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
              1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
              3.3333331174e-1)
    y = x * _f32(coeffs[0], dev)
    for c in coeffs[1:-1]:
        y = (y + _f32(c, dev)) * x
    y = y + _f32(coeffs[-1], dev)
    y = (y * x) * z
    y = y + e * _f32(-2.12194440e-4, dev)
    y = y - z * _f32(0.5, dev)
    return (x + y) + e * _f32(0.693359375, dev)


def _sincos_octant(bits: Tensor) -> tuple[Tensor, Tensor]:
    """A uniform point (cos, sin) on the unit circle from 32 random bits (see module doc)."""
    dev = bits.device
    odd = ((bits >> 9) << 1) | 1  # odd integer < 2^24: exact in float32
    phi = (odd.to(torch.float32) * _f32(2.0**-24, dev)) * _f32(0.78539816339744830962, dev)
    z = phi * phi
    s = ((z * _f32(-1.9515295891e-4, dev) + _f32(8.3321608736e-3, dev)) * z
         - _f32(1.6666654611e-1, dev))
    s = phi + (phi * z) * s
    c = (z * _f32(2.443315711809948e-5, dev) - _f32(1.388731625493765e-3, dev)) * z
    c = c + _f32(4.166664568298827e-2, dev)
    c = (_f32(1.0, dev) - z * _f32(0.5, dev)) + (z * z) * c
    swap = (bits & 1).bool()
    a, b = torch.where(swap, s, c), torch.where(swap, c, s)
    a = torch.where((bits & 2).bool(), -a, a)
    b = torch.where((bits & 4).bool(), -b, b)
    return a, b


def _radius(bits: Tensor) -> Tensor:
    odd = ((bits >> 9) << 1) | 1
    u = odd.to(torch.float32) * _f32(2.0**-24, bits.device)  # in (0, 1), exact
    # torch's float32 sqrt is not correctly rounded on every CPU build (1 ulp off for ~20% of
    # inputs here); a float64 sqrt rounded to float32 is, and matches the C kernel bit for bit.
    return torch.sqrt((_log_open01(u) * _f32(-2.0, bits.device)).double()).to(torch.float32)


def counter_words(step: Tensor, realization: Tensor, stream: int) -> tuple[Tensor, Tensor, Tensor]:
    """Counter words 1..3 (int64 tensors in [0, 2^32)) of (step, realization, stream): module doc."""
    word3 = (stream | ((step >> 32) << _STEP_HIGH_SHIFT)
             | ((realization >> 32) << _REALIZATION_HIGH_SHIFT))
    return step & _MASK32, realization & _MASK32, word3


def _check_stream(stream: int) -> int:
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream < STREAM_LIMIT:
        raise NegdError(f"stream: must be an integer in [0, {STREAM_LIMIT}), got {stream!r}")
    return stream


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise NegdError(f"n: must be an integer >= 0, got {n!r}")
    return n


def _range_error(name: str, limit: int, got: object) -> NegdError:
    return NegdError(f"{name}: must be an integer in [0, 2^{limit.bit_length() - 1}), got {got}")


def _check_step(step: int | Tensor) -> int | Tensor:
    """A Python int step is checked here (free); a tensor of steps by the caller's backend."""
    if isinstance(step, Tensor):
        if step.is_floating_point() or step.is_complex() or step.dtype == torch.bool:
            raise NegdError(f"step: must be an integer or an integer tensor, got {step.dtype}")
        return step
    if isinstance(step, bool) or not isinstance(step, int):
        raise NegdError(f"step: must be an integer or an integer tensor, got {step!r}")
    if not 0 <= step < STEP_LIMIT:
        raise _range_error("step", STEP_LIMIT, step)
    return step


def _check_tensor_range(name: str, values: Tensor, limit: int) -> None:
    """Range check of a tensor of counters on CPU (the kernel checks its own counters).

    Skipped on accelerators: reading the answer back would synchronize the device every step.
    """
    if values.device.type != "cpu":
        return
    if values.numel() and (bool((values < 0).any()) or bool((values >= limit).any())):
        bad = values[(values < 0) | (values >= limit)].reshape(-1)[0].item()
        raise _range_error(name, limit, bad)


def _kernels():
    """:mod:`negd.kernels` when its library can be used now, else None.

    Imported lazily: negd.kernels imports negd.losses.models, which imports this module.
    """
    from negd import kernels

    return kernels if kernels.available() else None


def _kernel_fits(realizations: Tensor, step: int | Tensor, device: torch.device | str | None) -> bool:
    if realizations.device.type != "cpu" or (device is not None and torch.device(device).type != "cpu"):
        return False
    if realizations.dim() != 1:
        return False
    if isinstance(step, Tensor):  # one step per realization, or one step as a 0-d/[1] tensor
        return step.device.type == "cpu" and (step.numel() == 1 or step.shape == realizations.shape)
    return True


def normal(seed: int, realizations: Tensor, step: int | Tensor, n: int, stream: int = STREAM_MUTATION,
           device: torch.device | str | None = None) -> Tensor:
    """Standard normals of shape [R, n], float32: row r is a function of (seed, realizations[r], step).

    ``step`` is one int, or an int64 tensor of shape [R] (each realization at its own step).
    Runs the C kernel where it fits (CPU tensors, kernel available), :func:`normal_reference`
    otherwise; both give the same bits.
    """
    step = _check_step(step)
    _check_stream(stream)
    _check_n(n)
    if _kernel_fits(realizations, step, device):
        kernels = _kernels()
        if kernels is not None:
            return kernels.normal(seed, realizations, step, n, stream)
    return normal_reference(seed, realizations, step, n, stream, device)


def normal_reference(seed: int, realizations: Tensor, step: int | Tensor, n: int,
                     stream: int = STREAM_MUTATION, device: torch.device | str | None = None) -> Tensor:
    """:func:`normal` in pure torch (any device): the definition the C kernel reproduces."""
    step = _check_step(step)
    _check_stream(stream)
    _check_n(n)
    device = torch.device(device) if device is not None else realizations.device
    rid = realizations.to(device=device, dtype=torch.int64).reshape(-1, 1)
    st = torch.as_tensor(step, dtype=torch.int64, device=device).reshape(-1, 1)
    _check_tensor_range("realization", rid, REALIZATION_LIMIT)
    if isinstance(step, Tensor):
        _check_tensor_range("step", st, STEP_LIMIT)
    blocks = torch.arange((n + 3) // 4, dtype=torch.int64, device=device).reshape(1, -1)
    x0, x1, x2, x3 = philox4x32(blocks, *counter_words(st, rid, stream), seed)
    ca, sa = _sincos_octant(x1)
    cb, sb = _sincos_octant(x3)
    ra, rb = _radius(x0), _radius(x2)
    z = torch.stack((ra * ca, ra * sa, rb * cb, rb * sb), dim=-1)  # [R, blocks, 4]
    return z.reshape(rid.shape[0], -1)[:, :n]


def uniform(seed: int, realizations: Tensor, step: int | Tensor, stream: int = STREAM_ACCEPT) -> Tensor:
    """Uniforms in [0, 1) of shape [R], float64 with 32 random bits each.

    Runs the C kernel where it fits, :func:`uniform_reference` otherwise (same bits).
    """
    step = _check_step(step)
    _check_stream(stream)
    if _kernel_fits(realizations, step, None):
        kernels = _kernels()
        if kernels is not None:
            return kernels.uniform(seed, realizations, step, stream)
    return uniform_reference(seed, realizations, step, stream)


def uniform_reference(seed: int, realizations: Tensor, step: int | Tensor,
                      stream: int = STREAM_ACCEPT) -> Tensor:
    """:func:`uniform` in pure torch (any device)."""
    step = _check_step(step)
    _check_stream(stream)
    device = realizations.device
    rid = realizations.to(torch.int64)
    st = torch.as_tensor(step, dtype=torch.int64, device=device)
    _check_tensor_range("realization", rid, REALIZATION_LIMIT)
    if isinstance(step, Tensor):
        _check_tensor_range("step", st, STEP_LIMIT)
    x0, _, _, _ = philox4x32(torch.zeros_like(rid), *counter_words(st, rid, stream), seed)
    return x0.to(torch.float64) * 2.0**-32
