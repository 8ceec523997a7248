"""Any gymnasium environment as a loss, through gymnasium's vector API: slower than the batched torch
environments of :mod:`negd.envs`, but any registered environment with a Box observation and a
Discrete or Box action space.

U(x) = - (1/E) sum_e G_e(x), minus the mean undiscounted return of E episodes, exactly as
:class:`negd.envs.ControlLoss` (the same per-step protocol: ``at(state)`` plays the step's episodes,
``loss(params)`` the E fixed ones, :func:`negd.envs.heldout_returns` held-out ones,
``second_draw(state)`` the step's episodes E..2E-1 for the ``"fresh"`` noise policy). The R x E
episodes run in one ``gymnasium.make_vec(env_id, num_envs=R E, vectorization_mode="sync")``; episode
e of realization r at step t of a run seeded ``seed`` is reset with the integer seed

    seed_e = word0 2^32 + word1,   (word0, word1) = Philox4x32-10 block e of (t, r, STREAM_EPISODE)

(:mod:`negd.rng`, the block that :func:`negd.envs.episode_starts` draws), so a realization's return
depends only on (seed, realization, step, episode). Every episode runs to termination or truncation
(the environment's own ``TimeLimit``, or ``max_steps``); steps of an episode that is over are not
counted (gymnasium's next-step autoreset plays them). Actions: the greedy argmax of n outputs for
``Discrete(n)``; for ``Box`` the outputs, reshaped to the action's shape and clipped to its bounds.
A policy output or a reward that is not finite while its episode runs makes its return NaN, so a
policy that breaks is never scored as a good one.

gymnasium is optional (``pip install "negd[control]"``) and imported only when such a loss is built.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from negd import rng
from negd.envs.loss import EpisodeLoss
from negd.envs.rollout import Policy
from negd.losses.models import MLPSpec
from negd.validation import NegdError, check_int

__all__ = ["GymnasiumLoss", "episode_seeds"]


def _gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise NegdError("gymnasium: not installed; the gymnasium adapter needs it "
                        "(pip install \"negd[control]\" or pip install \"gymnasium>=1,<2\")") from None
    return gymnasium


def episode_seeds(seed: int, realization: Tensor, step: int | Tensor, episodes: int) -> np.ndarray:
    """The reset seeds [R, E] (uint64 as Python ints in an object array) of the episodes (module doc)."""
    rid = realization.to(torch.int64).reshape(-1, 1).cpu()
    if isinstance(step, Tensor):
        st = step.to(torch.int64).reshape(-1, 1).cpu()
    else:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < rng.STEP_LIMIT:
            raise NegdError(f"step: must be an integer in [0, 2^44), got {step!r}")
        st = torch.full_like(rid, step)
    block = torch.arange(check_int("episodes", episodes), dtype=torch.int64).reshape(1, -1)
    words = rng.philox4x32(block, *rng.counter_words(st, rid, rng.STREAM_EPISODE), seed)
    hi, lo = (w.to(torch.int64).numpy().astype(np.uint64) for w in words[:2])
    return (hi << np.uint64(32)) | lo


class GymnasiumLoss(EpisodeLoss):
    """Minus the mean return of ``episodes`` episodes of the gymnasium environment ``env_id``.

    ``policy``: an :class:`negd.models.MLPSpec`, an ``nn.Module`` (observations [E, obs] -> outputs
    [E, out]) or a function ``(params [R, N], obs [R, E, obs]) -> [R, E, out]`` with ``n_params``;
    ``out`` is the number of discrete actions (greedy) or of action components. ``max_steps`` (optional)
    truncates episodes earlier than the environment's own limit; ``env_kwargs`` go to
    ``gymnasium.make_vec``.
    """

    def __init__(self, env_id: str, policy: MLPSpec | nn.Module | Policy, episodes: int = 10,
                 seed: int = 0, max_steps: int | None = None, env_kwargs: dict | None = None) -> None:
        gym = _gymnasium()
        if not isinstance(env_id, str) or env_id not in gym.registry:
            raise NegdError(f"env: {env_id!r} is not a registered gymnasium environment "
                            f"(gymnasium.registry lists {len(gym.registry)})")
        self.env_id, self.env_kwargs = env_id, dict(env_kwargs or {})
        self.max_steps = None if max_steps is None else check_int("max_steps", max_steps)
        probe = gym.make(env_id, **self.env_kwargs)
        try:
            self._read_spaces(gym, probe)
            limit = probe.spec.max_episode_steps if probe.spec is not None else None
        finally:
            probe.close()
        if limit is None and self.max_steps is None:
            raise NegdError(f"max_steps: {env_id} has no time limit of its own; give max_steps")
        self.horizon = min(x for x in (limit, self.max_steps) if x is not None)
        self._init_episodes(policy, episodes, seed, env_id, self.observation_size, self.policy_outputs,
                            "one per action, greedy" if self.discrete else "the action's components")
        self._vector_envs: dict[int, object] = {}

    def _read_spaces(self, gym, env) -> None:
        obs, act = env.observation_space, env.action_space
        if not isinstance(obs, gym.spaces.Box):
            raise NegdError(f"env: {self.env_id}'s observations are {type(obs).__name__}; the adapter "
                            f"takes Box observations")
        self.observation_size = int(math.prod(obs.shape))
        if isinstance(act, gym.spaces.Discrete):
            self.discrete, self.policy_outputs = True, int(act.n)
            self._action_shape, self._low, self._high = (), None, None
        elif isinstance(act, gym.spaces.Box):
            self.discrete, self.policy_outputs = False, int(math.prod(act.shape))
            self._action_shape, self._low, self._high = act.shape, act.low, act.high
        else:
            raise NegdError(f"env: {self.env_id}'s actions are {type(act).__name__}; the adapter takes "
                            f"Discrete or Box actions")

    def _vector_env(self, n: int):
        if n not in self._vector_envs:
            self._vector_envs[n] = _gymnasium().make_vec(self.env_id, num_envs=n,
                                                         vectorization_mode="sync", **self.env_kwargs)
        return self._vector_envs[n]

    def close(self) -> None:
        for env in self._vector_envs.values():
            env.close()
        self._vector_envs.clear()

    def _actions(self, out: np.ndarray) -> np.ndarray:
        if self.discrete:
            return out.argmax(axis=-1)
        acts = out.reshape(out.shape[0], *self._action_shape)
        return np.clip(acts, self._low, self._high).astype(self._low.dtype)

    def returns(self, params: Tensor, seed: int, realization: Tensor, step: int | Tensor,
                second: bool = False) -> Tensor:
        self._check_params(params)
        r, e = params.shape[0], self.episodes
        first = e if second else 0
        seeds = episode_seeds(seed, realization, step, first + e)[:, first:].reshape(-1)
        env = self._vector_env(r * e)
        obs, _ = env.reset(seed=[int(s) for s in seeds])
        returns = np.zeros(r * e)
        alive = np.ones(r * e, dtype=bool)
        broken = np.zeros(r * e, dtype=bool)
        with torch.no_grad():
            for _ in range(self.horizon):
                o = torch.as_tensor(np.asarray(obs, dtype=np.float64).reshape(r, e, -1), dtype=params.dtype)
                out = self.policy(params, o).to(torch.float64).reshape(r * e, -1).cpu().numpy()
                broken |= alive & ~np.isfinite(out).all(axis=1)
                obs, reward, terminated, truncated, _ = env.step(self._actions(np.nan_to_num(out)))
                reward = np.asarray(reward, dtype=np.float64)
                broken |= alive & ~np.isfinite(reward)
                returns += np.where(alive, reward, 0.0)
                self.env_steps += int(alive.sum())
                alive &= ~(np.asarray(terminated) | np.asarray(truncated))
                if not alive.any():
                    break
        returns[broken] = np.nan
        return torch.from_numpy(returns.reshape(r, e))
