"""Control tasks in pure torch, batched over realizations and episodes (issue 15).

* :mod:`negd.envs.cartpole`, :mod:`negd.envs.pendulum`: gymnasium 1.x's CartPole-v1 and
  Pendulum-v1 (exact constants, dynamics, termination, truncation), float32 or float64, any device;
* :mod:`negd.envs.base`: episode start states from :mod:`negd.rng` (stream ``STREAM_EPISODE``);
* :mod:`negd.envs.rollout`: batched episodes of R policies x E episodes;
* :mod:`negd.envs.loss`: :class:`ControlLoss`, minus the mean return, a loss [R, N] -> [R] for
  every update rule (``at(state)``: the step's episodes, as minibatches);
* :mod:`negd.envs.gymnasium_loss`: :class:`GymnasiumLoss`, the same loss for any gymnasium
  environment through its vector API (slower; gymnasium is imported only when one is built).
"""

from negd.envs.base import FIXED_STEP, HELDOUT_STEP, BatchedEnv, episode_starts
from negd.envs.cartpole import CartPole
from negd.envs.gymnasium_loss import GymnasiumLoss
from negd.envs.loss import ENVS, ControlLoss, EpisodeLoss, heldout_returns, make
from negd.envs.pendulum import Pendulum, angle_normalize
from negd.envs.rollout import Policy, mlp_policy, module_policy, policy_for, rollout

__all__ = ["FIXED_STEP", "HELDOUT_STEP", "BatchedEnv", "episode_starts", "CartPole", "Pendulum",
           "angle_normalize", "ENVS", "EpisodeLoss", "ControlLoss", "heldout_returns", "make", "Policy",
           "mlp_policy", "module_policy", "policy_for", "rollout", "GymnasiumLoss"]
