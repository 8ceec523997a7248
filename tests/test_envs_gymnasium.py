"""negd.envs.gymnasium_loss: any gymnasium environment as a loss through the vector API."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
import torch
from torch import nn

from negd.envs import CartPole, ControlLoss, GymnasiumLoss, heldout_returns, rollout
from negd.envs.gymnasium_loss import episode_seeds
from negd.envs.rollout import mlp_policy
from negd.losses.models import MLPSpec
from negd.rules import MinibatchNeuroevolution
from negd.validation import NegdError

gym = pytest.importorskip("gymnasium", reason="gymnasium is not installed (pip install gymnasium)")

CARTPOLE = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
PENDULUM = MLPSpec(depth=1, width=4, in_features=3, out_features=1)


def _params(spec: MLPSpec, rows: int, seed: int, scale: float = 0.5) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(rows, spec.n_params, generator=gen, dtype=torch.float64)


def _one_by_one(env_id: str, spec: MLPSpec, params: torch.Tensor, seeds: np.ndarray) -> np.ndarray:
    """The reference: each episode alone in gymnasium.make, the policy on one observation at a time."""
    policy = mlp_policy(spec)
    out = np.zeros(seeds.shape)
    for r in range(seeds.shape[0]):
        for e in range(seeds.shape[1]):
            env = gym.make(env_id)
            obs, _ = env.reset(seed=int(seeds[r, e]))
            done, total = False, 0.0
            while not done:
                o = torch.as_tensor(np.asarray(obs, dtype=np.float64)).reshape(1, 1, -1)
                y = policy(params[r:r + 1], o)[0, 0].numpy()
                action = int(y.argmax()) if env_id == "CartPole-v1" else np.clip(y, -2, 2).astype(np.float32)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += float(reward)
                done = terminated or truncated
            out[r, e] = total
            env.close()
    return out


@pytest.mark.parametrize("env_id,spec", [("CartPole-v1", CARTPOLE), ("Pendulum-v1", PENDULUM)])
def test_vector_returns_equal_episodes_played_one_by_one(env_id, spec):
    loss = GymnasiumLoss(env_id, spec, episodes=3, seed=5)
    params = _params(spec, 2, 0)
    realization = torch.tensor([4, 9])
    got = loss.returns(params, 5, realization, 17).numpy()
    want = _one_by_one(env_id, spec, params, episode_seeds(5, realization, 17, 3))
    np.testing.assert_array_equal(got, want)  # the same float64 operations in the same order
    assert loss.env_steps > 0


def test_cartpole_returns_equal_negd_batched_cartpole_from_the_same_starts():
    """gymnasium's own start states, played by negd.envs.CartPole: the same returns (float64)."""
    loss = GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=4, seed=2)
    params = _params(CARTPOLE, 3, 1, scale=0.3)
    realization = torch.arange(3)
    seeds = episode_seeds(2, realization, 0, 4)
    starts = np.zeros((3, 4, 4))
    for r in range(3):
        for e in range(4):
            env = gym.make("CartPole-v1")
            obs, _ = env.reset(seed=int(seeds[r, e]))
            starts[r, e] = np.array(env.unwrapped.state, dtype=np.float64)
            assert np.allclose(obs, starts[r, e], atol=1e-7)
            env.close()
    want = rollout(CartPole(), mlp_policy(CARTPOLE), params, torch.from_numpy(starts))
    got = loss.returns(params, 2, realization, 0)
    assert torch.equal(got, want), (got, want)
    assert got.max() > got.min()  # the policies differ: not every episode ends at the same step


def test_seeds_depend_only_on_seed_realization_step_episode():
    a = episode_seeds(3, torch.tensor([0, 7]), 5, 4)
    b = episode_seeds(3, torch.tensor([7]), 5, 6)
    np.testing.assert_array_equal(a[1], b[0, :4])
    assert len({int(s) for s in a.reshape(-1)}) == 8
    assert not np.array_equal(a, episode_seeds(3, torch.tensor([0, 7]), 6, 4))
    assert not np.array_equal(a, episode_seeds(4, torch.tensor([0, 7]), 5, 4))


def test_paired_neuroevolution_runs_and_is_deterministic():
    loss = GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=2, seed=1)
    rule = MinibatchNeuroevolution(sigma=0.3, mode="paired")

    def run():
        state = rule.init(torch.zeros(3, CARTPOLE.n_params, dtype=torch.float64), loss, seed=4)
        for _ in range(4):
            state = rule.step(state, loss)
        return state

    first, second = run(), run()
    assert torch.equal(first.params, second.params) and torch.equal(first.loss, second.loss)
    same = loss.on_episodes(4, first.realization, first.step - 1)(first.params)
    assert torch.equal(first.loss, same)  # the stored loss is the last step's episodes' loss
    held = heldout_returns(loss, first.params, episodes=5)
    assert held.shape == (3, 5) and torch.isfinite(held).all()


def test_a_policy_that_breaks_scores_nan_and_is_never_accepted():
    loss = GymnasiumLoss("Pendulum-v1", PENDULUM, episodes=2)
    params = torch.zeros(3, PENDULUM.n_params, dtype=torch.float64)
    params[1, -1], params[2, -1] = math.inf, math.nan
    out = loss(params)
    assert torch.isfinite(out[0]) and out[1:].isnan().all()

    def half_broken(p: torch.Tensor) -> torch.Tensor:
        broken = p.clone()
        broken[1, -1] = math.nan
        return loss(broken)

    rule = MinibatchNeuroevolution(sigma=0.5, mode="stale")
    state = rule.init(torch.zeros(2, PENDULUM.n_params, dtype=torch.float64), loss, seed=1)
    for _ in range(3):
        state = rule.step(state, half_broken)
        assert not state.accepted[1] and torch.isfinite(state.loss[0])


def test_float32_parameters_play_the_same_episodes():
    loss = GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=3)
    params = _params(CARTPOLE, 2, 3, scale=0.2)
    r64, r32 = loss(params), loss(params.float())
    assert r32.dtype == torch.float64 and (r64 - r32).abs().max() <= 0.5 * r64.abs().max()


def test_bad_inputs_get_one_line_errors(monkeypatch):
    def one_line(match, fn):
        with pytest.raises(NegdError, match=match) as err:
            fn()
        assert "\n" not in str(err.value)

    one_line(r"^env: 'NoSuchEnv-v0' is not a registered gymnasium environment",
             lambda: GymnasiumLoss("NoSuchEnv-v0", CARTPOLE))
    one_line(r"^env: FrozenLake-v1's observations are Discrete",
             lambda: GymnasiumLoss("FrozenLake-v1", CARTPOLE))
    one_line(r"^policy: CartPole-v1 needs 2 output", lambda: GymnasiumLoss("CartPole-v1", PENDULUM.__class__(
        depth=1, width=4, in_features=4, out_features=1)))
    one_line(r"^policy: cannot map Pendulum-v1's observations \(3 numbers\)",
             lambda: GymnasiumLoss("Pendulum-v1", nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 1))))
    one_line(r"^episodes:", lambda: GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=0))
    loss = GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=1)
    one_line(r"^params: the policy needs params \[R, 58\]", lambda: loss(torch.zeros(2, 5)))
    one_line(r"^dtype:", lambda: loss(torch.zeros(2, CARTPOLE.n_params, dtype=torch.float16)))

    real_import = builtins.__import__

    def no_gymnasium(name, *args, **kwargs):
        if name == "gymnasium" or name.startswith("gymnasium."):
            raise ImportError("No module named 'gymnasium'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gymnasium)
    one_line(r"^gymnasium: not installed", lambda: GymnasiumLoss("CartPole-v1", CARTPOLE))


def test_the_adapter_and_the_batched_loss_share_the_protocol():
    batched = ControlLoss("CartPole-v1", CARTPOLE, episodes=2)
    adapter = GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=2)
    for name in ("at", "on_episodes", "returns", "__call__", "n_params", "episodes", "seed", "env_steps"):
        assert hasattr(adapter, name) and hasattr(batched, name)


def test_second_draw_plays_the_steps_episodes_e_to_2e_for_the_fresh_mode():
    loss = GymnasiumLoss("CartPole-v1", CARTPOLE, episodes=2, seed=1)
    params = _params(CARTPOLE, 2, 4, scale=0.3)
    rule = MinibatchNeuroevolution(sigma=0.3, mode="fresh")
    state = rule.init(params, loss, seed=1)
    seeds = episode_seeds(1, state.realization, state.step, 4)  # episodes 0..3 of the step
    second = loss.second_draw(state)(params)
    np.testing.assert_array_equal(second.numpy(), -_one_by_one("CartPole-v1", CARTPOLE, params,
                                                                seeds[:, 2:]).mean(axis=1))
    first = loss.at(state)(params)
    np.testing.assert_array_equal(first.numpy(), -_one_by_one("CartPole-v1", CARTPOLE, params,
                                                               seeds[:, :2]).mean(axis=1))
    moved = rule.step(state, loss)
    again = rule.step(rule.init(params, loss, seed=1), loss)
    assert torch.equal(moved.params, again.params) and torch.equal(moved.loss, again.loss)
