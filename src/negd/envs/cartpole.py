"""CartPole-v1 of gymnasium 1.x in torch, batched over any leading dimensions.

Barto, Sutton & Anderson, "Neuronlike adaptive elements that can solve difficult learning control
problems", IEEE SMC 13, 834 (1983), as implemented by ``gymnasium.envs.classic_control.cartpole``
(same constants, same order of floating-point operations, explicit Euler integration)::

    temp      = (F + m_p l thdot^2 sin th) / (m_c + m_p)
    thacc     = (g sin th - cos th temp) / (l (4/3 - m_p cos^2 th / (m_c + m_p)))
    xacc      = temp - m_p l thacc cos th / (m_c + m_p)
    x += tau xdot; xdot += tau xacc; th += tau thdot; thdot += tau thacc

with F = +10 for action 1 and -10 for action 0, tau = 0.02, g = 9.8, m_c = 1, m_p = 0.1, l = 0.5
(half the pole). Reward 1 for every step, the terminating one included; termination when
|x| > 2.4 or |th| > 12 degrees; truncation after 500 steps (CartPole-v1). Start states uniform in
(-0.05, 0.05)^4. The observation is the state. A policy has two outputs (one per action) and acts
greedily: action = argmax (action 0 on a tie, as ``torch.argmax``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CartPole"]


class CartPole:
    name = "CartPole-v1"
    state_size = 4
    observation_size = 4
    policy_outputs = 2
    max_steps = 500
    reset_low = (-0.05,) * 4
    reset_high = (0.05,) * 4

    gravity = 9.8
    masscart = 1.0
    masspole = 0.1
    total_mass = masspole + masscart
    length = 0.5
    polemass_length = masspole * length
    force_mag = 10.0
    tau = 0.02
    theta_threshold_radians = 12 * 2 * math.pi / 360
    x_threshold = 2.4

    def observe(self, state: Tensor) -> Tensor:
        return state

    def action(self, output: Tensor) -> Tensor:
        """Greedy discrete action (int64, 0 or 1) from policy outputs [..., 2]."""
        return output.argmax(dim=-1)

    def step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(next state [..., 4], reward [...], terminated [...] bool) of ``state`` under ``action``."""
        x, x_dot, theta, theta_dot = state.unbind(-1)
        force = torch.where(action == 1, self.force_mag, -self.force_mag).to(state.dtype)
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + self.polemass_length * (theta_dot * theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * (costheta * costheta) / self.total_mass))
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        x = x + self.tau * x_dot
        x_dot = x_dot + self.tau * xacc
        theta = theta + self.tau * theta_dot
        theta_dot = theta_dot + self.tau * thetaacc
        terminated = ((x < -self.x_threshold) | (x > self.x_threshold)
                      | (theta < -self.theta_threshold_radians) | (theta > self.theta_threshold_radians))
        reward = torch.ones_like(x)
        return torch.stack((x, x_dot, theta, theta_dot), dim=-1), reward, terminated
