"""Use the fused rollout kernel (:mod:`negd.kernels.episodes`) when it fits, else the torch loop.

It fits when the environment is exactly :class:`negd.envs.CartPole` or :class:`negd.envs.Pendulum`
(not a subclass, which may change constants), the policy is an :class:`negd.losses.models.MLPSpec`
(:func:`negd.envs.rollout.mlp_policy`, also what an MLP-shaped ``nn.Sequential`` becomes) whose sizes
fit the environment, the parameters are float32 or float64 on CPU and need no gradient, and the
kernels are not disabled (``NEGD_DISABLE_KERNELS=1``) and load. Anything else (a CUDA tensor, an
``nn.Module`` of another shape, a policy function) runs the torch loop of :func:`negd.envs.rollout`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from negd.envs.base import BatchedEnv
from negd.envs.cartpole import CartPole
from negd.envs.pendulum import Pendulum
from negd.kernels import episodes
from negd.kernels.build import kernels_disabled
from negd.losses.models import MLPSpec

__all__ = ["kernel_fits", "kernel_rollout"]

_KERNEL_ENVS = {CartPole: "CartPole-v1", Pendulum: "Pendulum-v1"}


def kernel_fits(env: BatchedEnv, policy, params: Tensor) -> bool:
    """Whether :func:`kernel_rollout` can run ``env`` under ``policy`` with ``params`` (module doc)."""
    spec = getattr(policy, "spec", None)
    name = _KERNEL_ENVS.get(type(env))
    return (name is not None and isinstance(spec, MLPSpec) and not kernels_disabled()
            and env.max_steps == type(env).max_steps
            and spec.in_features == env.observation_size and spec.out_features == env.policy_outputs
            and params.device.type == "cpu" and params.dtype in (torch.float32, torch.float64)
            and params.dim() == 2 and params.shape[1] == spec.n_params
            and not (params.requires_grad and torch.is_grad_enabled()))


def kernel_rollout(env: BatchedEnv, policy, params: Tensor, starts: Tensor) -> tuple[Tensor, Tensor] | None:
    """(returns [R, E] float64, lengths [R, E] int64) from the kernel, or None when it does not fit."""
    if not kernel_fits(env, policy, params):
        return None
    spec = policy.spec
    arch = (spec.depth, spec.width, spec.in_features, spec.out_features, spec.output_bias)
    return episodes.env_rollout(_KERNEL_ENVS[type(env)], arch, spec.activation, params, starts)
