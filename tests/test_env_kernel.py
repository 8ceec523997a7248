"""The fused rollout kernel (negd_env.h, negd.kernels.episodes, negd.envs.fused) against gymnasium's
own environments and against the torch loop of negd.envs.rollout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from negd import kernels
from negd.bench.control import _policies
from negd.envs import CartPole, ControlLoss, Pendulum, episode_starts, fused, rollout
from negd.envs.rollout import mlp_policy, module_policy
from negd.kernels import episodes
from negd.losses.models import MLPSpec
from tests.gym_steps import cartpole_steps, pendulum_steps

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the C kernels are unavailable here")

# One step agrees with gymnasium to float64 rounding: the kernel's sin and cos are within ~1 ulp of
# numpy's (libm), and one step multiplies a relative error by at most ~10 (the largest coefficient
# chain, 15 sin(th) dt against thdot; CartPole's thacc terms), so a few 1e-16 relative; 1e-13 is the
# tolerance the torch environments meet (tests/test_envs.py).
STEP_TOL = dict(rtol=1e-13, atol=1e-13)


def _gym():
    return pytest.importorskip("gymnasium", reason="gymnasium is not installed (pip install gymnasium); "
                               "the step comparisons need its environments")


def test_kernel_cartpole_steps_equal_gymnasium_float64():
    gym = _gym()
    g = np.random.default_rng(10)
    n = 1500
    states = np.stack([g.uniform(-2.4, 2.4, n), g.uniform(-3, 3, n), g.uniform(-0.25, 0.25, n),
                       g.uniform(-3, 3, n)], axis=1)
    states[:100, 2] = g.uniform(-40, 40, 100)  # beyond the first period of sin/cos: the range reduction
    actions = g.integers(0, 2, n)
    want_state, want_term = cartpole_steps(gym, states, actions)
    got, reward, term = episodes.env_step("CartPole-v1", torch.from_numpy(states), torch.from_numpy(actions))
    want = torch.from_numpy(want_state)
    torch.testing.assert_close(got, want, **STEP_TOL)
    assert term.tolist() == want_term and 0 < sum(want_term) < n
    assert torch.equal(reward, torch.ones(n, dtype=torch.float64))
    assert (got == want).double().mean() > 0.9  # most steps bit for bit (numbers in the report)


def test_kernel_pendulum_steps_equal_gymnasium_float64():
    gym = _gym()
    g = np.random.default_rng(11)
    n = 1500
    states = np.stack([g.uniform(-60, 60, n), g.uniform(-8, 8, n)], axis=1)  # many turns: angle_normalize
    states[:20, 0] = np.pi * np.arange(-10, 10)  # exact multiples of pi: the floored modulo's edge
    torques = g.uniform(-3, 3, n)  # some beyond max_torque: clipped
    want_state, want_reward = pendulum_steps(gym, states, torques)
    got, reward, term = episodes.env_step("Pendulum-v1", torch.from_numpy(states), torch.from_numpy(torques))
    torch.testing.assert_close(got, torch.from_numpy(want_state), **STEP_TOL)
    # the cost has no sin or cos, but numpy's float64 ** 2 is libm's pow, which is not always x * x
    # (1.1206829317046036 ** 2 is 1 ulp above the correctly rounded square): to rounding, mostly exact
    want_reward = torch.tensor(want_reward, dtype=torch.float64)
    torch.testing.assert_close(reward, want_reward, **STEP_TOL)
    assert (reward == want_reward).double().mean() > 0.9
    assert not term.any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_step_is_the_torch_step_up_to_rounding(dtype):
    g = torch.Generator().manual_seed(12)
    for env, name in ((CartPole(), "CartPole-v1"), (Pendulum(), "Pendulum-v1")):
        state = (torch.rand(999, env.state_size, generator=g, dtype=torch.float64) - 0.5).to(dtype)
        action = torch.randint(0, 2, (999,), generator=g) if name == "CartPole-v1" else \
            torch.rand(999, generator=g, dtype=torch.float64).to(dtype) * 6 - 3
        want = env.step(state, action)
        got = episodes.env_step(name, state, action)
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else STEP_TOL
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b.to(a.dtype), **tol)


def _random_policies(spec: MLPSpec, rows: int, seed: int, dtype: torch.dtype, scale: float = 1.0
                     ) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(rows, spec.n_params, generator=g, dtype=torch.float64)).to(dtype)


SPECS = [MLPSpec(depth=1, width=8, in_features=4, out_features=2),
         MLPSpec(depth=2, width=5, in_features=4, out_features=2, output_bias=False),
         MLPSpec(depth=3, width=7, in_features=4, out_features=2, activation="relu")]


@pytest.mark.parametrize("spec", SPECS, ids=["8", "5x5-nobias", "7x7x7-relu"])
def test_kernel_cartpole_rollouts_equal_torch_float64(spec):
    """Random policies: short, well-conditioned episodes (the rounding differences of the two paths,
    ~1e-16, grow by the open-loop instability e^(4/s t) to far below any action margin), so returns
    and lengths are equal, not close. E = 13: a vector with padding lanes."""
    env = CartPole()
    params = _random_policies(spec, 9, 13, torch.float64)
    if spec.depth == 1:  # perturbed balancing policies: episodes of tens to hundreds of steps
        params = _policies(spec, 9, 0, torch.float64) + 0.3 * params
    starts = episode_starts(env, 5, torch.arange(9), 0, 13)
    k_ret, k_len = rollout(env, mlp_policy(spec), params, starts, lengths=True)
    t_ret, t_len = rollout(env, mlp_policy(spec), params, starts, lengths=True, kernel=False)
    assert torch.equal(k_len, t_len) and torch.equal(k_ret, t_ret)
    assert len(k_len.unique()) >= 3  # terminations at different steps


def test_kernel_cartpole_long_episodes_flip_no_more_than_rounding_does():
    """Balancing policies (episodes of up to 500 steps): a rounding difference grows like e^(lambda t),
    lambda = sqrt(g / (l (4/3 - m_p/M))) ~ 4/s of the upright pole, ~1e13 after 400 steps, until an
    action margin |o_1 - o_0| is crossed and the trajectories part. Which episodes part is therefore a
    property of rounding, not of the dynamics: the kernel may change the return of no more episodes
    than a 1-ulp jitter of the torch path's state after every step does (measured: 19 and 31 of 3072;
    bound: twice the jitter's count + 5, where a wrong constant changes almost every return)."""
    class Jitter(CartPole):
        def step(self, state, action):
            s, r, term = super().step(state, action)
            return torch.nextafter(s, torch.full_like(s, math.inf)), r, term

    spec = SPECS[0]
    params = _policies(spec, 32, 0, torch.float64)
    kernel_flips = jitter_flips = total = 0
    for seed in (1, 2, 3):
        starts = episode_starts(CartPole(), seed, torch.arange(32), 0, 32)
        t_ret, t_len = rollout(CartPole(), mlp_policy(spec), params, starts, lengths=True, kernel=False)
        k_ret, k_len = rollout(CartPole(), mlp_policy(spec), params, starts, lengths=True)
        j_ret = rollout(Jitter(), mlp_policy(spec), params, starts)
        assert torch.equal(k_ret, k_len.double())
        kernel_flips += int((k_ret != t_ret).sum())
        jitter_flips += int((j_ret != t_ret).sum())
        total += t_ret.numel()
        assert (t_ret == 500).double().mean() > 0.5  # mostly truncated: the long-episode regime
    assert jitter_flips > 0
    assert kernel_flips <= 2 * jitter_flips + 5, (kernel_flips, jitter_flips, total)


PENDULUM_SPECS = [MLPSpec(depth=1, width=8, in_features=3, out_features=1),
                  MLPSpec(depth=2, width=6, in_features=3, out_features=1, activation="relu")]


@pytest.mark.parametrize("spec", PENDULUM_SPECS, ids=["8", "6x6-relu"])
def test_kernel_pendulum_rollouts_equal_torch_float64(spec):
    """200 steps, the torque clipped at +-2 and the speed at +-8: the paths' relative difference of a
    return stays near rounding (measured ~1e-14, a step's ~1e-16 grown by the dynamics); 1e-10 bounds
    it with room, where a wrong constant changes returns by 1e-3 or more."""
    env = Pendulum()
    params = _random_policies(spec, 7, 14, torch.float64)
    starts = episode_starts(env, 6, torch.arange(7), 0, 11)
    k_ret, k_len = rollout(env, mlp_policy(spec), params, starts, lengths=True)
    t_ret, t_len = rollout(env, mlp_policy(spec), params, starts, lengths=True, kernel=False)
    assert torch.equal(k_len, t_len) and (k_len == 200).all()
    torch.testing.assert_close(k_ret, t_ret, rtol=1e-10, atol=0)


def test_kernel_float32_follows_float64_as_the_torch_float32_does():
    """float32 rounding parts long trajectories too: the float32 kernel is as far from float64 as
    torch's float32 loop is (Pendulum returns within twice its error + 1e-4 relative; CartPole random
    policies equal)."""
    spec = MLPSpec(depth=1, width=8, in_features=3, out_features=1)
    params = _random_policies(spec, 8, 15, torch.float64)
    starts = episode_starts(Pendulum(), 7, torch.arange(8), 0, 16)
    ref = rollout(Pendulum(), mlp_policy(spec), params, starts, kernel=False)
    k32 = rollout(Pendulum(), mlp_policy(spec), params.float(), starts)
    t32 = rollout(Pendulum(), mlp_policy(spec), params.float(), starts, kernel=False)
    err_k, err_t = ((k32 - ref).abs() / ref.abs()).max(), ((t32 - ref).abs() / ref.abs()).max()
    assert err_k <= 2 * err_t + 1e-4, (float(err_k), float(err_t))
    spec = SPECS[0]
    params = _random_policies(spec, 8, 16, torch.float64)
    starts = episode_starts(CartPole(), 8, torch.arange(8), 0, 21)
    ref = rollout(CartPole(), mlp_policy(spec), params, starts, kernel=False)
    assert torch.equal(rollout(CartPole(), mlp_policy(spec), params.float(), starts), ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["CartPole-v1", "Pendulum-v1"])
def test_kernel_rollouts_bitwise_independent_of_thread_count(name, dtype):
    env = CartPole() if name == "CartPole-v1" else Pendulum()
    spec = MLPSpec(depth=2, width=6, in_features=env.observation_size, out_features=env.policy_outputs)
    params = _random_policies(spec, 37, 17, dtype, 0.5)
    starts = episode_starts(env, 9, torch.arange(37), 0, 19, dtype)
    arch = (spec.depth, spec.width, spec.in_features, spec.out_features, spec.output_bias)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(episodes.env_rollout(name, arch, "tanh", params, starts))
    finally:
        torch.set_num_threads(threads)
    for ret, length in runs[1:]:
        assert torch.equal(ret, runs[0][0]) and torch.equal(length, runs[0][1])
    # one realization alone: the same numbers as in the ensemble
    one = episodes.env_rollout(name, arch, "tanh", params[20:21], starts[20:21])
    assert torch.equal(one[0][0], runs[0][0][20])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("env", [CartPole(), Pendulum()], ids=["cartpole", "pendulum"])
def test_kernel_non_finite_policy_output_makes_the_return_nan(env, dtype):
    spec = MLPSpec(depth=1, width=4, in_features=env.observation_size, out_features=env.policy_outputs)
    params = _random_policies(spec, 4, 18, dtype)
    params[1, -1] = math.nan  # an output bias: NaN from the first step
    params[2, spec.slices()[1][0].start] = math.inf  # an output weight: +-inf (or NaN) outputs
    starts = episode_starts(env, 10, torch.arange(4), 0, 5, dtype)
    k_ret, k_len = rollout(env, mlp_policy(spec), params, starts, lengths=True)
    t_ret, t_len = rollout(env, mlp_policy(spec), params, starts, lengths=True, kernel=False)
    assert k_ret[1:3].isnan().all() and not k_ret[[0, 3]].isnan().any()
    assert torch.equal(k_len, t_len)  # NaN outputs act as torch.argmax does (NaN is the largest)
    loss = ControlLoss(env, spec, episodes=5)(params)
    assert loss[1:3].isnan().all()


def test_dispatch_uses_the_kernel_only_where_it_fits(monkeypatch):
    calls = []
    real = episodes.env_rollout

    def spy(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(fused.episodes, "env_rollout", spy)
    spec = SPECS[0]
    params = _random_policies(spec, 3, 19, torch.float64)
    starts = episode_starts(CartPole(), 11, torch.arange(3), 0, 6)
    want = rollout(CartPole(), mlp_policy(spec), params, starts, kernel=False)

    def run(env, policy, p=params, **kw):
        calls.clear()
        got = rollout(env, policy, p, starts, **kw)
        return got, len(calls)

    got, n = run(CartPole(), mlp_policy(spec))
    assert n == 1 and torch.equal(got, want)
    assert run(CartPole(), policy_of(spec.module()))[1] == 1  # an MLP-shaped Sequential: the fast path
    odd = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.LayerNorm(8), nn.Linear(8, 2)).double()
    assert run(CartPole(), module_policy(odd), torch.zeros(3, sum(p.numel() for p in odd.parameters()),
                                                          dtype=torch.float64))[1] == 0
    assert run(CartPole(), mlp_policy(spec), kernel=False)[1] == 0

    class Heavier(CartPole):
        masspole = 0.2

    assert run(Heavier(), mlp_policy(spec))[1] == 0  # a subclass may change constants: torch loop
    grad = params.clone().requires_grad_(True)
    assert run(CartPole(), mlp_policy(spec), grad)[1] == 0
    with torch.no_grad():
        assert run(CartPole(), mlp_policy(spec), grad)[1] == 1
    monkeypatch.setenv("NEGD_DISABLE_KERNELS", "1")
    got, n = run(CartPole(), mlp_policy(spec))
    assert n == 0 and torch.equal(got, want)
    assert not fused.kernel_fits(CartPole(), mlp_policy(spec), params)


def policy_of(module: nn.Module):
    from negd.envs import policy_for

    return policy_for(module)


def test_control_loss_runs_through_the_kernel_and_wrong_sizes_still_get_one_line(monkeypatch):
    spec = MLPSpec(depth=1, width=8, in_features=3, out_features=1)
    loss = ControlLoss("Pendulum-v1", spec, episodes=4)
    params = _random_policies(spec, 5, 20, torch.float64)
    fast = loss(params)
    monkeypatch.setenv("NEGD_DISABLE_KERNELS", "1")
    torch.testing.assert_close(fast, loss(params), rtol=1e-10, atol=0)
    with pytest.raises(Exception, match="policy"):
        ControlLoss("CartPole-v1", MLPSpec(depth=1, width=8, in_features=4, out_features=3))


def test_kernel_wrapper_rejects_what_it_cannot_run():
    from negd.validation import NegdError

    params = torch.zeros(2, 58, dtype=torch.float64)
    starts = torch.zeros(2, 3, 4, dtype=torch.float64)
    with pytest.raises(NegdError, match="env"):
        episodes.env_rollout("Acrobot-v1", (1, 8, 4, 2, True), "tanh", params, starts)
    with pytest.raises(NegdError, match="starts"):
        episodes.env_rollout("CartPole-v1", (1, 8, 4, 2, True), "tanh", params, starts[..., :2])
    with pytest.raises(NegdError, match="params"):
        episodes.env_rollout("CartPole-v1", (1, 8, 4, 2, True), "tanh", params.half(), starts)
    with pytest.raises(NegdError, match="arch"):
        episodes.env_rollout("CartPole-v1", (1, 9, 4, 2, True), "tanh", params, starts)
    with pytest.raises(NegdError, match="arch"):
        episodes.env_rollout("Pendulum-v1", (1, 8, 4, 2, True), "tanh", params, starts[..., :2])
