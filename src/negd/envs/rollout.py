"""Batched episodes: R parameter vectors x E episodes stepped together, returns in float64.

``rollout(env, policy, params [R, N], starts [R, E, d])`` runs every episode to termination or
truncation (``env.max_steps``) and returns the undiscounted return of each, [R, E] float64. All
episodes advance in lock step; an episode that has terminated keeps its state and earns nothing more
(its reward of the terminating step counts, as in gymnasium). The loop stops early once every
episode is over (checked every :data:`_DONE_CHECK_EVERY` steps: on an accelerator each check
synchronizes the device). A policy output that is not finite while its episode runs makes that
episode's return NaN, so a policy that breaks is never scored as a good one.

An MLP policy on CPU plays the same episodes in the fused C kernel instead (:mod:`negd.envs.fused`;
``kernel=False`` or ``NEGD_DISABLE_KERNELS=1`` runs the torch loop): the same dynamics, returns equal
to float rounding (the kernel's sin, cos and policy arithmetic round differently from torch's).

A policy is any ``policy(params [R, N], observations [R, E, obs]) -> outputs [R, E, out]``:
:func:`mlp_policy` (the fast path: :meth:`negd.models.MLPSpec.forward`, batched matrix products) or
:func:`module_policy` (any ``nn.Module``, ``torch.func.functional_call`` vectorized by vmap).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from negd.envs.base import BatchedEnv
from negd.envs.fused import kernel_rollout
from negd.losses.models import MLPSpec
from negd.validation import NegdError

__all__ = ["Policy", "mlp_policy", "module_policy", "policy_for", "rollout"]

Policy = Callable[[Tensor, Tensor], Tensor]
_DONE_CHECK_EVERY = 10


def mlp_policy(spec: MLPSpec) -> Policy:
    """The MLP ``spec`` as a policy: outputs [R, E, out] of observations [R, E, in]."""
    def policy(params: Tensor, obs: Tensor) -> Tensor:
        return spec.forward(params, obs)

    policy.n_params = spec.n_params
    policy.spec = spec  # what negd.envs.fused reads to run the fused kernel
    policy.in_features, policy.out_features = spec.in_features, spec.out_features
    return policy


def module_policy(model: nn.Module) -> Policy:
    """Any deterministic ``nn.Module`` mapping observations [E, in] to outputs [E, out] as a policy
    of flat parameter vectors (``named_parameters`` order, as :func:`negd.models.flat_params`)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]

    def single(flat: Tensor, obs: Tensor) -> Tensor:
        tensors, pos = {}, 0
        for name, shape in zip(names, shapes):
            tensors[name] = flat[pos:pos + shape.numel()].reshape(shape)
            pos += shape.numel()
        return functional_call(model, tensors, (obs,))

    batched = vmap(single)

    def policy(params: Tensor, obs: Tensor) -> Tensor:
        return batched(params, obs.to(params.dtype))

    policy.n_params = sum(p.numel() for p in model.parameters())
    return policy


def policy_for(policy: MLPSpec | nn.Module | Policy) -> Policy:
    """A :data:`Policy` from an MLPSpec, an ``nn.Module`` (an MLPSpec-shaped Sequential takes the fast
    path) or a policy function (used as it is)."""
    if isinstance(policy, MLPSpec):
        return mlp_policy(policy)
    if isinstance(policy, nn.Module):
        spec = MLPSpec.from_module(policy)
        return mlp_policy(spec) if spec is not None else module_policy(policy)
    if callable(policy):
        return policy
    raise NegdError(f"policy: must be an MLPSpec, an nn.Module or a callable, got {type(policy).__name__}")


def rollout(env: BatchedEnv, policy: Policy, params: Tensor, starts: Tensor, *, lengths: bool = False,
            kernel: bool = True) -> Tensor | tuple[Tensor, Tensor]:
    """Returns [R, E] (float64) of the episodes starting at ``starts`` [R, E, d] (module docstring);
    with ``lengths=True`` also the number of environment steps of each episode [R, E] (int64).
    ``kernel=False``: the torch loop even where the fused kernel fits."""
    if starts.dim() != 3 or starts.shape[0] != params.shape[0] or starts.shape[2] != env.state_size:
        raise NegdError(f"starts: must have shape [R = {params.shape[0]}, E, {env.state_size}], got "
                        f"{list(starts.shape)}")
    fused = kernel_rollout(env, policy, params, starts) if kernel else None
    if fused is not None:
        return fused if lengths else fused[0]
    state = starts.to(params.dtype)
    returns = torch.zeros(starts.shape[:2], dtype=torch.float64, device=starts.device)
    alive = torch.ones(starts.shape[:2], dtype=torch.bool, device=starts.device)
    broken = torch.zeros_like(alive)
    length = torch.zeros(starts.shape[:2], dtype=torch.int64, device=starts.device)
    with torch.no_grad():
        for t in range(env.max_steps):
            out = policy(params, env.observe(state))
            if out.shape[:2] != state.shape[:2] or out.dim() != 3 or out.shape[2] != env.policy_outputs:
                raise NegdError(f"policy: {env.name} needs outputs [R, E, {env.policy_outputs}] "
                                f"({env.policy_outputs} per observation), got {list(out.shape)}")
            broken |= alive & ~torch.isfinite(out).all(dim=-1)
            new_state, reward, terminated = env.step(state, env.action(out))
            returns += torch.where(alive, reward.to(torch.float64), 0.0)
            length += alive
            state = torch.where(alive[..., None], new_state, state)
            alive = alive & ~terminated
            if (t + 1) % _DONE_CHECK_EVERY == 0 and not bool(alive.any()):
                break
    returns = torch.where(broken, torch.nan, returns)
    return (returns, length) if lengths else returns
