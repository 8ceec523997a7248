"""Control as a loss: U(x) = - (1/E) sum_e G_e(x), minus the mean return of E episodes.

A :class:`ControlLoss` maps policy parameters [R, N] to losses [R] (float64, minimized; no
gradient exists for a greedy discrete policy and none is ever asked for). Which episodes are
played is the noise policy, and it uses the per-step protocol of :mod:`negd.minibatch` (the same
one minibatches use, :func:`negd.minibatch.step_loss`):

* ``loss.at(state)`` is the loss on the episodes of ``state``'s step: realization r plays episodes
  0..E-1 of (state.seed, r, state.step) (:func:`negd.envs.base.episode_starts`). A rule that
  scores parent and proposal with it in the same step, as
  :class:`negd.rules.MinibatchNeuroevolution` does in its ``"paired"`` mode, compares them on the
  same episodes (common random numbers); ``"stale"`` keeps the parent's loss from the step it was
  accepted, on other episodes; ``"fresh"`` scores the parent on ``loss.second_draw(state)``, episodes
  E..2E-1 of the same (seed, r, step): independent of the proposal's, and a pure function of
  (seed, realization, step) too;
* ``loss(params)``, called without a state, is the loss on E fixed episodes, the same for every
  row (step :data:`negd.envs.base.FIXED_STEP`, realization 0): a deterministic objective that
  every rule, the optimizer and the runner can use as it is.

:func:`heldout_returns` scores policies on episodes that no training step plays
(:data:`negd.envs.base.HELDOUT_STEP`).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from negd.envs.base import FIXED_STEP, HELDOUT_STEP, BatchedEnv, check_env_dtype, check_seed, episode_starts
from negd.envs.cartpole import CartPole
from negd.envs.pendulum import Pendulum
from negd.envs.rollout import Policy, parameter_count, policy_for, rollout
from negd.losses.models import MLPSpec
from negd.state import State
from negd.validation import NegdError, check_int, first_line

__all__ = ["ENVS", "make", "EpisodeLoss", "ControlLoss", "heldout_returns", "probe_policy"]

ENVS: dict[str, type] = {"CartPole-v1": CartPole, "Pendulum-v1": Pendulum}


def make(env: str | BatchedEnv) -> BatchedEnv:
    """The batched environment named ``env`` (one of :data:`ENVS`), or ``env`` itself."""
    if isinstance(env, str):
        if env not in ENVS:
            raise NegdError(f"env: unknown environment {env!r}; batched environments are "
                            f"{', '.join(ENVS)}")
        return ENVS[env]()
    if not all(hasattr(env, a) for a in ("step", "observe", "action", "state_size", "max_steps")):
        raise NegdError(f"env: must be one of {', '.join(ENVS)} or a batched environment, got "
                        f"{type(env).__name__}")
    return env


def probe_policy(policy: Policy, n_params: int, env_name: str, observation_size: int, outputs: int,
                 role: str) -> None:
    """One forward pass on a zero observation: the policy must map ``observation_size`` numbers to
    ``outputs`` (``role`` says what they are) per observation; one line naming the policy otherwise."""
    obs = torch.zeros(1, 1, observation_size, dtype=torch.float64)
    try:
        out = policy(torch.zeros(1, n_params, dtype=torch.float64), obs)
    except NegdError:
        raise
    except Exception as err:  # a shape mismatch inside the model: say which input it wanted
        raise NegdError(f"policy: cannot map {env_name}'s observations ({observation_size} numbers) to "
                        f"actions: {first_line(err)}") from None
    if out.dim() != 3 or out.shape[-1] != outputs:
        raise NegdError(f"policy: {env_name} needs {outputs} output(s) per observation ({role}), got "
                        f"output shape {list(out.shape[1:])}")


class EpisodeLoss:
    """Minus the mean return of ``episodes`` episodes per realization, with the per-step protocol of the
    module docstring (``at``, ``second_draw``, a direct call on the fixed episodes). A subclass calls
    :meth:`_init_episodes` and implements :meth:`returns`."""

    def _init_episodes(self, policy: MLPSpec | nn.Module | Policy, episodes: int, seed: int, env_name: str,
                       observation_size: int, outputs: int, role: str) -> None:
        self.episodes = check_int("episodes", episodes)
        self.seed = check_seed(seed)
        self.policy = policy_for(policy)
        self.n_params = parameter_count(self.policy)
        probe_policy(self.policy, self.n_params, env_name, observation_size, outputs, role)
        self.env_steps = 0  # environment steps of live episodes played so far, as gymnasium counts them

    def returns(self, params: Tensor, seed: int, realization: Tensor, step: int | Tensor,
                second: bool = False) -> Tensor:
        """Returns [R, E] (float64) of each realization's episodes at (seed, realization, step):
        episodes 0..E-1, or E..2E-1 with ``second`` (the step's second, independent draw)."""
        raise NotImplementedError

    def _check_params(self, params: Tensor) -> None:
        if not isinstance(params, Tensor) or params.dim() != 2 or params.shape[1] != self.n_params:
            got = list(params.shape) if isinstance(params, Tensor) else type(params).__name__
            raise NegdError(f"params: the policy needs params [R, {self.n_params}], got {got}")
        check_env_dtype(params.dtype)

    def on_episodes(self, seed: int, realization: Tensor, step: int | Tensor, second: bool = False):
        """The loss [R, N] -> [R] on the episodes of ``realization`` [R] at ``step`` (``second``:
        the step's second draw, episodes E..2E-1)."""
        def loss_fn(params: Tensor) -> Tensor:
            if params.dim() == 2 and params.shape[0] != realization.shape[0]:
                raise NegdError(f"params: a control loss of {realization.shape[0]} realizations needs "
                                f"params [{realization.shape[0]}, N], got {list(params.shape)}")
            return -self.returns(params, seed, realization, step, second).mean(dim=1).to(params.device)

        return loss_fn

    def at(self, state: State):
        """The loss of ``state``'s step: each realization on its own episodes."""
        return self.on_episodes(state.seed, state.realization, state.step)

    def second_draw(self, state: State):
        """The loss of ``state``'s step on episodes E..2E-1: independent of :meth:`at`'s episodes."""
        return self.on_episodes(state.seed, state.realization, state.step, second=True)

    def __call__(self, params: Tensor) -> Tensor:
        """Loss on the fixed episodes (the same E episodes for every row)."""
        self._check_params(params)
        rows = torch.zeros(params.shape[0], dtype=torch.int64, device=params.device)
        return self.on_episodes(self.seed, rows, FIXED_STEP)(params)


class ControlLoss(EpisodeLoss):
    """Minus the mean return of ``episodes`` episodes of ``env`` under ``policy`` (module docstring).

    ``policy``: an :class:`negd.models.MLPSpec`, an ``nn.Module`` (observations [E, in] -> outputs
    [E, out]) or a function ``(params [R, N], obs [R, E, in]) -> [R, E, out]`` with ``n_params``.
    The environment runs in the parameters' dtype on their device.
    """

    def __init__(self, env: str | BatchedEnv, policy: MLPSpec | nn.Module | Policy, episodes: int = 10,
                 seed: int = 0) -> None:
        self.env = make(env)
        outputs = self.env.policy_outputs
        self._init_episodes(policy, episodes, seed, self.env.name, self.env.observation_size, outputs,
                            "one per action, greedy" if outputs > 1 else "the action")

    def returns(self, params: Tensor, seed: int, realization: Tensor, step: int | Tensor,
                second: bool = False) -> Tensor:
        self._check_params(params)
        first = self.episodes if second else 0
        starts = episode_starts(self.env, seed, realization, step, first + self.episodes, params.dtype,
                                params.device)[:, first:]
        returns, lengths = rollout(self.env, self.policy, params, starts, lengths=True)
        self.env_steps += int(lengths.sum())
        return returns


def heldout_returns(loss: EpisodeLoss, params: Tensor, episodes: int = 100, seed: int | None = None
                    ) -> Tensor:
    """Returns [R, episodes] (float64) on held-out episodes (no training step plays them), the same
    episodes for every row; ``loss`` a :class:`ControlLoss` or a :class:`GymnasiumLoss`."""
    held = copy.copy(loss)
    held.episodes = check_int("episodes", episodes)
    rows = torch.zeros(params.shape[0], dtype=torch.int64, device=params.device)
    return held.returns(params, loss.seed if seed is None else seed, rows, HELDOUT_STEP)
