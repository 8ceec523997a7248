"""Episode start states from :mod:`negd.rng`, and the interface of a batched environment.

A batched environment holds no state of its own: ``step(state [..., d], action [...])`` returns the
next state, the reward and the termination flag of every episode at once, in the dtype of ``state``
(float32 or float64) on its device. Episode ``e`` of realization ``r`` at step ``t`` of a run seeded
``seed`` starts from uniforms drawn from Philox4x32-10 (:func:`negd.rng.philox4x32`) with the counter
layout of :mod:`negd.rng`::

    word0 = e, word1 = t mod 2^32, word2 = r mod 2^32, word3 = STREAM_EPISODE | high bits

One Philox block gives four 32-bit words, u_k = word_k 2^-32 in [0, 1), and the start state is
``low + (high - low) u`` (computed in float64, then cast). So a realization's return depends only on
(seed, realization, step, episode), whatever the ensemble size, chunking or device.

Two step values are reserved (a run would need 2^44 steps to reach them): :data:`FIXED_STEP`, the
fixed episodes a control loss uses when called without a state, and :data:`HELDOUT_STEP`, the
held-out episodes of evaluations (:func:`negd.envs.loss.heldout_returns`).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from negd import rng
from negd.validation import NegdError, check_int

__all__ = ["BatchedEnv", "check_seed", "episode_starts", "FIXED_STEP", "HELDOUT_STEP", "check_env_dtype"]

FIXED_STEP = rng.STEP_LIMIT - 2
HELDOUT_STEP = rng.STEP_LIMIT - 1
_WORDS_PER_BLOCK = 4


class BatchedEnv(Protocol):
    """A stateless batched environment (module docstring)."""

    name: str
    state_size: int
    observation_size: int
    policy_outputs: int
    max_steps: int
    reset_low: tuple[float, ...]
    reset_high: tuple[float, ...]

    def observe(self, state: Tensor) -> Tensor: ...

    def action(self, output: Tensor) -> Tensor: ...

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]: ...


def check_env_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise NegdError(f"dtype: environments run in float32 or float64, got {dtype}")
    return dtype


def check_seed(seed: int) -> int:
    """A run's seed: an integer in [0, 2^64) (Philox's key)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise NegdError(f"seed: must be an integer in [0, 2^64), got {seed!r}")
    return seed


def episode_starts(env: BatchedEnv, seed: int, realization: Tensor, step: int | Tensor, episodes: int,
                   dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """Start states [R, E, d] of ``episodes`` episodes of each realization at ``step`` (module doc).

    ``step`` is one int, or an int64 tensor [R] (each realization at its own step).
    """
    episodes = check_int("episodes", episodes)
    check_env_dtype(dtype)
    check_seed(seed)
    d = env.state_size
    if d > _WORDS_PER_BLOCK:
        raise NegdError(f"env: start states of more than {_WORDS_PER_BLOCK} numbers are not supported")
    device = torch.device(device) if device is not None else realization.device
    rid = realization.to(device=device, dtype=torch.int64).reshape(-1, 1)
    if isinstance(step, Tensor):
        st = step.to(device=device, dtype=torch.int64).reshape(-1, 1)
    else:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < rng.STEP_LIMIT:
            raise NegdError(f"step: must be an integer in [0, 2^44), got {step!r}")
        st = torch.full_like(rid, step)
    # Checked on CPU only: reading the answer back would synchronize an accelerator every step.
    if rid.device.type == "cpu" and rid.numel() and (bool((rid < 0).any())
                                                     or bool((rid >= rng.REALIZATION_LIMIT).any())):
        raise NegdError("realization: ids must be integers in [0, 2^44)")
    block = torch.arange(episodes, dtype=torch.int64, device=device).reshape(1, -1)
    words = rng.philox4x32(block, *rng.counter_words(st, rid, rng.STREAM_EPISODE), seed)
    u = torch.stack(words[:d], dim=-1).to(torch.float64) * 2.0**-32  # [R, E, d] in [0, 1)
    low = torch.tensor(env.reset_low, dtype=torch.float64, device=device)
    high = torch.tensor(env.reset_high, dtype=torch.float64, device=device)
    return (low + (high - low) * u).to(dtype)
