"""Whole episodes of CartPole-v1 and Pendulum-v1 under MLP policies, fused in C (``negd_env.h``).

The kernel runs what :func:`negd.envs.rollout` runs for an :class:`negd.losses.models.MLPSpec`
policy, without a Python step: for each realization r (OpenMP over realizations, each computed by one
thread, so the thread count changes nothing), its E episodes in SIMD lanes, the policy of row r
(hidden layers of one activation, linear output) and gymnasium 1.x's dynamics, termination and
truncation (CartPole-v1: Barto, Sutton & Anderson, IEEE SMC 13, 834 (1983), 500 steps; Pendulum-v1:
200 steps), in float32 or float64, returns summed in float64 in the order of the torch loop.

This module is part of the leaf package :mod:`negd.kernels`: it takes tensors and an environment
name, not environment objects. Deciding when the kernel fits is :mod:`negd.envs.fused`'s job.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negd.kernels import ACTIVATIONS, KERNEL_DTYPES, _ptr, _raise_counter_error, _threads
from negd.kernels.build import load_library
from negd.validation import NegdError

__all__ = ["ENV_CODES", "STATE_SIZES", "env_rollout", "env_step"]

# Codes of negd_env.h (ENV_CARTPOLE, ENV_PENDULUM), each environment's state size and its policy's
# (inputs, outputs).
ENV_CODES = {"CartPole-v1": 0, "Pendulum-v1": 1}
STATE_SIZES = {"CartPole-v1": 4, "Pendulum-v1": 2}
POLICY_SIZES = {"CartPole-v1": (4, 2), "Pendulum-v1": (3, 1)}


def _check_arch(env: str, arch: tuple[int, int, int, int, bool], n_params: int) -> None:
    depth, width, in_f, out_f, bias = (int(a) for a in arch)
    n = in_f * width + width + (depth - 1) * (width * width + width) + width * out_f + (out_f if bias else 0)
    if depth < 1 or width < 1 or (in_f, out_f) != POLICY_SIZES[env] or n != n_params:
        raise NegdError(f"arch: {env} needs an MLP {POLICY_SIZES[env][0]} -> ... -> {POLICY_SIZES[env][1]} "
                        f"of depth, width >= 1 and {n_params} parameters, got (depth, width, in, out, bias) "
                        f"{tuple(arch)} ({n} parameters)")


def env_rollout(env: str, arch: tuple[int, int, int, int, bool], activation: str, params: Tensor,
                starts: Tensor) -> tuple[Tensor, Tensor] | None:
    """Returns [R, E] (float64) and episode lengths [R, E] (int64) of the episodes of ``env`` starting
    at ``starts`` [R, E, d] under the MLPs ``params`` [R, N], or None when the kernels are unavailable.

    ``arch``: (depth, width, in_features, out_features, output_bias) of the MLP; ``activation`` a key
    of :data:`negd.kernels.ACTIVATIONS`. ``params`` must be a CPU float32 or float64 tensor; ``starts``
    is cast to its dtype (as the torch loop does).
    """
    if env not in ENV_CODES:
        raise NegdError(f"env: the rollout kernel runs {', '.join(ENV_CODES)}, got {env!r}")
    if activation not in ACTIVATIONS:
        raise NegdError(f"activation: the kernels take {', '.join(ACTIVATIONS)}, got {activation!r}")
    if params.dtype not in KERNEL_DTYPES or params.device.type != "cpu" or params.dim() != 2:
        raise NegdError(f"params: the rollout kernel takes CPU float32/float64 params [R, N], got "
                        f"{params.dtype} {list(params.shape)} on {params.device}")
    r = params.shape[0]
    d = STATE_SIZES[env]
    if starts.dim() != 3 or starts.shape[0] != r or starts.shape[2] != d:
        raise NegdError(f"starts: must have shape [R = {r}, E, {d}], got {list(starts.shape)}")
    _check_arch(env, arch, params.shape[1])
    lib = load_library()
    if lib is None:
        return None
    params = params.detach().contiguous()
    starts = starts.detach().to(device="cpu", dtype=params.dtype).contiguous()
    e = starts.shape[1]
    codes = torch.tensor([int(a) for a in arch] + [ACTIVATIONS[activation]], dtype=torch.int32)
    returns = torch.empty(r, e, dtype=torch.float64)
    lengths = torch.empty(r, e, dtype=torch.int64)
    fn = getattr(lib, f"negd_env_rollout_{KERNEL_DTYPES[params.dtype]}")
    err = fn(ENV_CODES[env], _ptr(codes), _ptr(params), r, params.shape[1], _ptr(starts), e, _ptr(returns),
             _ptr(lengths), _threads())
    _raise_counter_error(err, "env_rollout")
    return returns, lengths


def env_step(env: str, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the kernel's dynamics (the code its rollouts run) for each row of ``state`` [n, d]
    (float32 or float64) under ``action`` [n] (CartPole: 0 or 1; Pendulum: the torque): the next state
    [n, d], the reward [n] and the termination flag [n]. RuntimeError when the kernels are unavailable."""
    if env not in ENV_CODES:
        raise NegdError(f"env: the rollout kernel runs {', '.join(ENV_CODES)}, got {env!r}")
    d = STATE_SIZES[env]
    if state.dtype not in KERNEL_DTYPES or state.dim() != 2 or state.shape[1] != d:
        raise NegdError(f"state: must be float32/float64 [n, {d}], got {state.dtype} {list(state.shape)}")
    lib = load_library()
    if lib is None:
        raise RuntimeError("negd kernels unavailable")
    state = state.detach().to("cpu").contiguous()
    action = action.detach().to(device="cpu", dtype=state.dtype).reshape(-1).contiguous()
    n = state.shape[0]
    if action.numel() != n:
        raise NegdError(f"action: must have {n} entries, got {action.numel()}")
    nxt, reward = torch.empty_like(state), torch.empty(n, dtype=state.dtype)
    term = torch.empty(n, dtype=torch.uint8)
    fn = getattr(lib, f"negd_env_step_{KERNEL_DTYPES[state.dtype]}")
    err = fn(ENV_CODES[env], _ptr(state), _ptr(action), n, _ptr(nxt), _ptr(reward), _ptr(term))
    _raise_counter_error(err, "env_step")
    return nxt, reward, term.to(torch.bool)
