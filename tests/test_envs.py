"""negd.envs: gymnasium's CartPole-v1 and Pendulum-v1 in batched torch, episode seeds, ControlLoss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from negd import rng
from negd.envs import (
    HELDOUT_STEP,
    CartPole,
    ControlLoss,
    Pendulum,
    episode_starts,
    heldout_returns,
    make,
    rollout,
)
from negd.envs.rollout import mlp_policy
from negd.losses.models import MLPSpec
from negd.rules import MinibatchNeuroevolution
from negd.validation import NegdError
from tests.gym_steps import cartpole_steps, pendulum_steps

gym = pytest.importorskip("gymnasium", reason="gymnasium is not installed (pip install gymnasium); "
                          "the trajectory comparisons need its environments")

# Float64 rounding: torch's vectorized sin/cos differ from numpy's by 1 ulp on ~0.2% of inputs, so
# one step agrees to a few ulps, not bit for bit.
TOL = dict(rtol=1e-13, atol=1e-13)


def _random_cartpole_states(n: int, seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    return np.stack([g.uniform(-2.4, 2.4, n), g.uniform(-3, 3, n), g.uniform(-0.21, 0.21, n),
                     g.uniform(-3, 3, n)], axis=1)


def test_cartpole_steps_equal_gymnasium_float64():
    states = _random_cartpole_states(1500, 0)
    actions = np.random.default_rng(1).integers(0, 2, len(states))
    want_state, want_term = cartpole_steps(gym, states, actions)
    got, reward, term = CartPole().step(torch.from_numpy(states), torch.from_numpy(actions))
    torch.testing.assert_close(got, torch.from_numpy(want_state), **TOL)
    assert term.tolist() == want_term and 0 < sum(want_term) < len(want_term)
    assert torch.equal(reward, torch.ones(len(states), dtype=torch.float64))


def test_pendulum_steps_equal_gymnasium_float64():
    g = np.random.default_rng(2)
    n = 1500
    states = np.stack([g.uniform(-12, 12, n), g.uniform(-8, 8, n)], axis=1)  # beyond one turn
    torques = g.uniform(-3, 3, n)  # some beyond max_torque: clipped
    want_state, want_reward = pendulum_steps(gym, states, torques)
    got, reward, term = Pendulum().step(torch.from_numpy(states), torch.from_numpy(torques))
    torch.testing.assert_close(got, torch.from_numpy(want_state), **TOL)
    torch.testing.assert_close(reward, torch.tensor(want_reward, dtype=torch.float64), **TOL)
    assert not term.any()


def _gym_episode(name: str, start: np.ndarray, act) -> tuple[float, list[np.ndarray]]:
    """Return and states of one gymnasium episode (TimeLimit included) from ``start``."""
    env = gym.make(name)
    env.reset(seed=0)
    env.unwrapped.state = start.copy()
    total, states, done = 0.0, [], False
    while not done:
        _, reward, terminated, truncated, _ = env.step(act(np.array(env.unwrapped.state)))
        total += float(reward)
        states.append(np.array(env.unwrapped.state, dtype=np.float64))
        done = terminated or truncated
    return total, states


def _linear_policy(weights: list[float], bias: float, outputs: int):
    """A fixed linear policy as a flat MLP-free function and as its numpy twin."""
    w = torch.tensor(weights, dtype=torch.float64)

    def policy(params: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        score = obs @ w + bias
        return torch.stack((-score, score), dim=-1) if outputs == 2 else score[..., None]

    policy.n_params = 1
    return policy


def test_cartpole_episodes_equal_gymnasium_including_truncation():
    """Whole episodes under a balancing controller: returns (terminations at 500 included) equal."""
    weights = [0.1, 0.5, 10.0, 1.5]
    policy = _linear_policy(weights, 0.0, 2)
    starts = episode_starts(CartPole(), 3, torch.arange(1), 0, 12)  # [1, 12, 4]
    got = rollout(CartPole(), policy, torch.zeros(1, 1, dtype=torch.float64), starts)[0]
    want = [_gym_episode("CartPole-v1", s.numpy(), lambda x: int(np.dot(weights, x) > 0))[0]
            for s in starts[0]]
    assert got.tolist() == want and max(want) == 500.0


def test_pendulum_episode_equal_gymnasium_200_steps():
    weights = [-2.0, -6.0, -1.0]
    policy = _linear_policy(weights, 0.0, 1)
    starts = episode_starts(Pendulum(), 4, torch.arange(1), 0, 5)
    got = rollout(Pendulum(), policy, torch.zeros(1, 1, dtype=torch.float64), starts)[0]
    for s, g_ret in zip(starts[0], got):
        def act(x: np.ndarray) -> np.ndarray:
            return np.array([np.dot(weights, [np.cos(x[0]), np.sin(x[0]), x[1]])])

        ret, states = _gym_episode("Pendulum-v1", s.numpy(), act)
        assert len(states) == 200
        assert math.isclose(float(g_ret), ret, rel_tol=1e-10)


@pytest.mark.parametrize("env", [CartPole(), Pendulum()])
def test_float32_follows_float64(env):
    g = torch.Generator().manual_seed(5)
    state = torch.rand(200, env.state_size, generator=g, dtype=torch.float64) * 0.2 - 0.1
    action = torch.randint(0, 2, (200,), generator=g) if env.policy_outputs == 2 else torch.rand(200) * 4 - 2
    s64, r64, t64 = env.step(state, action)
    s32, r32, t32 = env.step(state.float(), action)
    assert s32.dtype == torch.float32 and r32.dtype == torch.float32
    torch.testing.assert_close(s32.double(), s64, rtol=1e-5, atol=1e-6)


def test_episode_starts_depend_only_on_seed_realization_step_episode():
    env = CartPole()
    full = episode_starts(env, 7, torch.arange(6), 3, 5)
    part = episode_starts(env, 7, torch.tensor([4, 1]), 3, 8)
    assert torch.equal(part[:, :5], full[[4, 1]])  # any subset of rows, more episodes: same numbers
    assert full.shape == (6, 5, 4) and full.abs().max() < 0.05
    assert not torch.equal(episode_starts(env, 7, torch.arange(6), 4, 5), full)
    assert not torch.equal(episode_starts(env, 8, torch.arange(6), 3, 5), full)
    steps = torch.tensor([3, 3, 9, 3, 3, 3])  # one step per realization
    mixed = episode_starts(env, 7, torch.arange(6), steps, 5)
    assert torch.equal(mixed[[0, 1, 3]], full[[0, 1, 3]])
    assert torch.equal(mixed[2], episode_starts(env, 7, torch.tensor([2]), 9, 5)[0])
    pend = episode_starts(Pendulum(), 7, torch.arange(500), 0, 4)
    assert pend[..., 0].abs().max() <= math.pi and pend[..., 1].abs().max() <= 1.0
    # uniform on the box: mean 0, standard error pi / sqrt(3 * 2000) per coordinate; 4 SE
    assert abs(float(pend[..., 0].mean())) < 4 * math.pi / math.sqrt(3 * 2000)


def test_episode_stream_is_its_own():
    tags = [getattr(rng, n) for n in rng.__all__ if n.startswith("STREAM_") and n != "STREAM_LIMIT"]
    assert len(set(tags)) == len(tags) and rng.STREAM_EPISODE in tags


def _cartpole_loss(episodes: int = 4) -> tuple[ControlLoss, MLPSpec]:
    spec = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
    return ControlLoss("CartPole-v1", spec, episodes=episodes, seed=11), spec


def test_control_loss_is_minus_mean_return_and_per_realization():
    loss, spec = _cartpole_loss()
    params = torch.randn(6, spec.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fixed = loss(params)
    assert fixed.dtype == torch.float64 and fixed.shape == (6,)
    assert torch.equal(fixed[2:3], loss(params[2:3]))  # the fixed episodes are the same for every row
    rid = torch.arange(10, 16)
    at5 = loss.on_episodes(11, rid, 5)(params)
    assert torch.equal(at5[[3, 0]], loss.on_episodes(11, rid[[3, 0]], 5)(params[[3, 0]]))
    starts = episode_starts(loss.env, 11, rid, 5, 4)
    manual = -rollout(loss.env, mlp_policy(spec), params, starts).mean(dim=1)
    assert torch.equal(at5, manual)
    assert (fixed <= -1).all() and (fixed >= -500).all()
    # CartPole's return is the episode length: the env-step counter adds up the returns played
    loss.env_steps = 0
    assert loss.env_steps == 0 and int(-loss(params).sum() * 4) == loss.env_steps


def test_module_policy_equals_the_mlp_fast_path():
    loss, spec = _cartpole_loss()

    class Wrapped(nn.Module):  # not a Sequential: takes the functional_call + vmap path
        def __init__(self) -> None:
            super().__init__()
            self.net = spec.module()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    module_loss = ControlLoss("CartPole-v1", Wrapped(), episodes=4, seed=11)
    params = torch.randn(5, spec.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(module_loss(params), loss(params), rtol=0, atol=0)


def test_paired_neuroevolution_compares_parent_and_proposal_on_the_same_episodes():
    loss, spec = _cartpole_loss()
    gen = torch.Generator().manual_seed(2)
    params = 0.3 * torch.randn(4, spec.n_params, generator=gen, dtype=torch.float64)
    rule = MinibatchNeuroevolution(sigma=0.1, mode="paired")
    state = rule.init(params, loss, seed=11)
    for _ in range(3):
        before = state
        state = rule.step(state, loss)
        same_episodes = loss.on_episodes(11, before.realization, before.step)
        want = torch.where(state.accepted, same_episodes(state.params), same_episodes(before.params))
        assert torch.equal(state.loss, want)


def test_heldout_episodes_are_not_training_episodes():
    loss, spec = _cartpole_loss()
    params = torch.zeros(2, spec.n_params, dtype=torch.float64)
    held = heldout_returns(loss, params, episodes=7)
    assert held.shape == (2, 7)
    starts = episode_starts(loss.env, 11, torch.zeros(1, dtype=torch.int64), HELDOUT_STEP, 7)
    assert torch.equal(held[0], rollout(loss.env, mlp_policy(spec), params[:1], starts)[0])


def test_bad_inputs_get_one_line_errors():
    spec = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
    with pytest.raises(NegdError, match=r"^env: unknown environment 'CartPole-v9'") as err:
        ControlLoss("CartPole-v9", spec)
    assert "\n" not in str(err.value)
    with pytest.raises(NegdError, match=r"^policy: CartPole-v1 needs 2 output"):
        ControlLoss("CartPole-v1", MLPSpec(depth=1, width=8, in_features=4, out_features=1))
    with pytest.raises(NegdError, match=r"^policy: Pendulum-v1 needs 1 output"):
        ControlLoss("Pendulum-v1", MLPSpec(depth=1, width=8, in_features=3, out_features=2))
    with pytest.raises(NegdError, match=r"^policy: cannot map CartPole-v1's observations"):
        ControlLoss("CartPole-v1", nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2), nn.Flatten(0)))
    with pytest.raises(NegdError, match=r"^episodes:"):
        ControlLoss("CartPole-v1", spec, episodes=0)
    loss = ControlLoss("CartPole-v1", spec)
    with pytest.raises(NegdError, match=r"^params: the policy needs params \[R, 58\]"):
        loss(torch.zeros(3, 5))
    with pytest.raises(NegdError, match=r"^dtype:"):
        loss(torch.zeros(3, spec.n_params, dtype=torch.float16))
    with pytest.raises(NegdError, match=r"^env:"):
        make(object())


def test_a_policy_that_breaks_scores_nan_and_is_never_accepted():
    spec = MLPSpec(depth=1, width=4, in_features=3, out_features=1)
    loss = ControlLoss("Pendulum-v1", spec, episodes=2)
    params = torch.zeros(3, spec.n_params, dtype=torch.float64)
    params[1, -1] = math.inf  # output bias inf: torque clipped to 2, but the output is not finite
    params[2, -1] = math.nan
    out = loss(params)
    assert torch.isfinite(out[0]) and out[1:].isnan().all()
    start = torch.zeros(2, spec.n_params, dtype=torch.float64)

    def half_broken(p: torch.Tensor) -> torch.Tensor:  # proposals of row 1 always break
        broken = p.clone()
        broken[1, -1] = math.nan
        return loss(broken)

    for mode in ("paired", "stale"):
        rule = MinibatchNeuroevolution(sigma=0.5, mode=mode)
        state = rule.init(start, loss, seed=1)
        for _ in range(5):
            state = rule.step(state, half_broken)
            assert not state.accepted[1] and torch.isfinite(state.loss[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    loss, spec = _cartpole_loss()
    params = torch.randn(4, spec.n_params, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(loss(params.cuda()).cpu(), loss(params), rtol=0, atol=0)
