"""gymnasium's own CartPole-v1 and Pendulum-v1 stepped from given states: the reference of the step tests
of the batched torch environments (test_envs.py) and of the rollout kernel (test_env_kernel.py)."""

from __future__ import annotations

import numpy as np


def cartpole_steps(gym, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, list[bool]]:
    """Next states [n, 4] (float64) and termination flags of one step from each (state, action)."""
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=0)
    next_states, terminated = [], []
    for s, a in zip(states, actions):
        env.state = s.copy()
        env.steps_beyond_terminated = None
        _, reward, term, truncated, _ = env.step(int(a))
        assert reward == 1.0 and not truncated
        next_states.append(np.array(env.state, dtype=np.float64))
        terminated.append(term)
    return np.stack(next_states), terminated


def pendulum_steps(gym, states: np.ndarray, torques: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Next states [n, 2] (float64) and rewards of one step from each (state, torque)."""
    env = gym.make("Pendulum-v1").unwrapped
    env.reset(seed=0)
    next_states, rewards = [], []
    for s, u in zip(states, torques):
        env.state = s.copy()
        _, reward, terminated, truncated, _ = env.step(np.array([u]))
        assert not terminated and not truncated
        next_states.append(np.array(env.state, dtype=np.float64))
        rewards.append(float(reward))
    return np.stack(next_states), rewards
