"""Pendulum-v1 of gymnasium 1.x in torch, batched over any leading dimensions.

The inverted pendulum swing-up of ``gymnasium.envs.classic_control.pendulum`` (same constants and
order of floating-point operations)::

    u      = clip(u, -2, 2)
    cost   = angle_normalize(th)^2 + 0.1 thdot^2 + 0.001 u^2,      reward = -cost
    thdot' = clip(thdot + (3 g/(2 l) sin th + 3/(m l^2) u) dt, -8, 8)
    th'    = th + thdot' dt

with g = 10, m = l = 1, dt = 0.05, angle_normalize(a) = ((a + pi) mod 2 pi) - pi (numpy's
floored modulo). Never terminates; truncation after 200 steps. Start states th ~ U(-pi, pi),
thdot ~ U(-1, 1). The observation is (cos th, sin th, thdot); a policy has one output, the torque
(clipped by the environment, as in gymnasium).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["Pendulum", "angle_normalize"]


def angle_normalize(a: Tensor) -> Tensor:
    """((a + pi) mod 2 pi) - pi with numpy's floored modulo (fmod, then shifted into [0, 2 pi))."""
    shifted = a + math.pi
    m = torch.fmod(shifted, 2 * math.pi)
    m = torch.where(m < 0, m + 2 * math.pi, m)
    return m - math.pi


class Pendulum:
    name = "Pendulum-v1"
    state_size = 2
    observation_size = 3
    policy_outputs = 1
    max_steps = 200
    reset_low = (-math.pi, -1.0)
    reset_high = (math.pi, 1.0)

    max_speed = 8
    max_torque = 2.0
    dt = 0.05
    g = 10.0
    m = 1.0
    l = 1.0  # noqa: E741 (gymnasium's name)

    def observe(self, state: Tensor) -> Tensor:
        th, thdot = state.unbind(-1)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=-1)

    def action(self, output: Tensor) -> Tensor:
        """The torque [...] from policy outputs [..., 1] (clipped in :meth:`step`)."""
        return output[..., 0]

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(next state [..., 2], reward [...], terminated [...] (all False)) under torque ``action``."""
        th, thdot = state.unbind(-1)
        u = torch.clamp(action.to(state.dtype), -self.max_torque, self.max_torque)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        newthdot = thdot + (3 * self.g / (2 * self.l) * torch.sin(th)
                            + 3.0 / (self.m * self.l**2) * u) * self.dt
        newthdot = torch.clamp(newthdot, -self.max_speed, self.max_speed)
        newth = th + newthdot * self.dt
        return torch.stack((newth, newthdot), dim=-1), -costs, torch.zeros_like(th, dtype=torch.bool)
