"""The mean-field twin of neuroevolution, which needs no gradient, and the smoothed-objective
(evolution-strategies) gradient twin, a diagnostic of where neuroevolution is not gradient descent.

**Mean-field twin.** Neuroevolution (Whitelam et al., Nat. Commun. 12, 6317 (2021)) moves x by
dx = sigma xi with probability p(dU) = min(1, exp(-beta dU)) (beta = inf: 1[dU <= 0]), dU =
U(x + sigma xi) - U(x). Its expected step is estimated from M proposals::

    E[dx | x] ~ (1/M) sum_m sigma xi_m p(dU_m)                      (plain)
              ~ (1/J) sum_j sigma xi_j (p(dU_j+) - p(dU_j-)) / 2     (antithetic: J = M/2 pairs +-xi_j)

and the twin moves x <- x + tau E[dx | x] (tau = ``time_step`` NE steps per twin step). The
acceptance probability replaces the accept coin (Rao-Blackwell), every proposal and the parent are
scored by the same loss of the step (``step_loss``: the same minibatch or the same episodes: common
random numbers), and the directions are a pure function of (seed, realization, step) (stream
``STREAM_MEAN_FIELD``), so the twin is deterministic given its seed. It is the deterministic drift of
neuroevolution on any objective, smooth or not; on a smooth loss at small sigma it equals the
moment-matched drift (:class:`negd.rules.MomentMatchedLangevin`). A non-finite proposal has p = 0.

**Smoothed-objective twin.** Evolution strategies follow the gradient of U_sigma(x) = E[U(x + sigma
eps)], estimated antithetically: g_sigma ~ (1/J) sum_j (U(x + sigma xi_j) - U(x - sigma xi_j)) xi_j /
(2 sigma). :class:`SmoothedGradientTwin` moves x <- x - tau (beta sigma^2/2) g_sigma (finite beta) or
x <- x - tau (sigma/sqrt(2 pi)) g_sigma/|g_sigma| (beta = inf): the usual twins with U_sigma for U.
At a kink they differ from neuroevolution: on U = |x| at small beta sigma the Metropolis drift is
-(beta sigma^2/2) erf(sqrt(2) x/sigma) while U_sigma's is -(beta sigma^2/2) erf(x/(sqrt(2) sigma)):
neuroevolution at x moves as the smoothed gradient does at 2x (docs/control.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from negd import rng
from negd.losses.base import LossFn, as_ensemble_params, evaluate
from negd.losses.minibatch import step_loss
from negd.state import State, init_state
from negd.validation import NegdError, check_beta, check_int, check_positive

__all__ = ["MeanFieldTwin", "SmoothedGradientTwin", "acceptance_probability", "directions"]


def acceptance_probability(new_loss: Tensor, old_loss: Tensor, beta: float) -> Tensor:
    """p(dU) [.] float64: min(1, exp(-beta dU)), 1[dU <= 0] at beta = inf; 0 for a non-finite new loss,
    1 for a finite one when the old loss is not finite (as :func:`negd.rules.metropolis_accept`)."""
    d_u = new_loss.to(torch.float64) - old_loss.to(torch.float64)[..., None]
    finite = torch.isfinite(new_loss)
    old_bad = ~torch.isfinite(old_loss)[..., None]
    if math.isinf(beta):
        p = (d_u <= 0).to(torch.float64)
    else:
        p = torch.exp(-beta * d_u.clamp(min=0))
    return torch.where(finite, torch.where(old_bad, 1.0, p), 0.0)


def directions(state: State, count: int, stream: int) -> Tensor:
    """``count`` standard normal directions [R, count, N] (float32) of ``state``'s step."""
    n = state.n_params
    padded = 4 * ((n + 3) // 4)
    if count * padded // 4 >= 2**32:
        raise NegdError(f"proposals: {count} proposals of {n} parameters exceed the generator's range")
    xi = rng.normal(state.seed, state.realization, state.step, count * padded, stream=stream)
    return xi.view(-1, count, padded)[:, :, :n]


def _repeated(state: State, params: Tensor, m: int) -> State:
    """A state whose rows are ``m`` copies of each realization (the step loss of each copy is its
    realization's: same batch, same episodes)."""
    r = state.n_realizations
    return State(params, torch.zeros(r * m, dtype=torch.float64, device=params.device), state.step,
                 state.seed, state.realization.repeat_interleave(m),
                 torch.zeros(r * m, dtype=torch.bool, device=params.device))


def _losses(state: State, loss_fn: LossFn, shifts: Tensor) -> Tensor:
    """Losses [R, m] of x + shifts ([R, m, N]) on the step's loss, in one call."""
    r, m, n = shifts.shape
    params = (state.params[:, None, :] + shifts.to(state.params.dtype)).reshape(r * m, n)
    return evaluate(step_loss(loss_fn, _repeated(state, params, m)), params).view(r, m)


def _check_common(sigma: float, beta: float, proposals: int, time_step: float) -> tuple:
    if isinstance(sigma, Tensor):
        raise NegdError("sigma: the mean-field and smoothed twins need one positive number")
    return (check_positive("sigma", sigma), check_beta(beta), check_int("proposals", proposals),
            check_positive("time_step", time_step))


@dataclass(frozen=True)
class MeanFieldTwin:
    """x <- x + tau E[dx | x], E estimated from ``proposals`` proposals (module docstring)."""

    sigma: float
    beta: float = math.inf
    proposals: int = 64
    antithetic: bool = True
    time_step: float = 1.0
    chunk: int = 256  # proposals per loss call: bounds memory, does not change any number

    def __post_init__(self) -> None:
        sigma, beta, proposals, time_step = _check_common(self.sigma, self.beta, self.proposals,
                                                          self.time_step)
        if self.antithetic and proposals % 2:
            raise NegdError(f"proposals: antithetic proposals come in pairs, got an odd count {proposals}")
        for name, value in (("sigma", sigma), ("beta", beta), ("proposals", proposals),
                            ("time_step", time_step), ("chunk", check_int("chunk", self.chunk))):
            object.__setattr__(self, name, value)

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        params = as_ensemble_params(params, realizations)
        state = init_state(params, torch.zeros(params.shape[0], dtype=torch.float64), seed=seed,
                           realization=realization)
        return state.replace(loss=evaluate(step_loss(loss_fn, state), params))

    def step_samples(self, state: State, loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        """(i.i.d. unbiased samples [R, J, N] of E[dx | x], U(x) [R]), float64: J = M/2 antithetic
        pairs or M single proposals (module docstring)."""
        parent = evaluate(step_loss(loss_fn, state), state.params)
        count = self.proposals // 2 if self.antithetic else self.proposals
        xi = directions(state, count, rng.STREAM_MEAN_FIELD).to(torch.float64)
        units = []
        for start in range(0, count, self.chunk):
            z = xi[:, start:start + self.chunk]
            p_plus = acceptance_probability(_losses(state, loss_fn, self.sigma * z), parent, self.beta)
            if self.antithetic:
                p_minus = acceptance_probability(_losses(state, loss_fn, -self.sigma * z), parent, self.beta)
                units.append(self.sigma * z * ((p_plus - p_minus) / 2)[..., None])
            else:
                units.append(self.sigma * z * p_plus[..., None])
        return torch.cat(units, dim=1), parent

    def expected_step(self, state: State, loss_fn: LossFn) -> tuple[Tensor, Tensor, Tensor]:
        """The mean step ``E[dx | x]`` of shape [R, N], its standard error (same shape) and U(x) of shape
        [R], of one NE step, float64."""
        u, parent = self.step_samples(state, loss_fn)
        count = u.shape[1]
        se = u.std(dim=1) / math.sqrt(count) if count > 1 else torch.full_like(u[:, 0], math.inf)
        return u.mean(dim=1), se, parent

    def step(self, state: State, loss_fn: LossFn) -> State:
        drift, _, _ = self.expected_step(state, loss_fn)
        params = (state.params.to(torch.float64) + self.time_step * drift).to(state.params.dtype)
        # The loss kept is that of the new parameters on this step's loss (as MinibatchGradient).
        return state.replace(params=params, loss=evaluate(step_loss(loss_fn, state), params),
                             step=state.step + 1, accepted=torch.ones_like(state.accepted))


@dataclass(frozen=True)
class SmoothedGradientTwin:
    """Gradient descent on U_sigma with an antithetic ES gradient estimate (module docstring)."""

    sigma: float
    beta: float = math.inf
    proposals: int = 64
    time_step: float = 1.0

    def __post_init__(self) -> None:
        sigma, beta, proposals, time_step = _check_common(self.sigma, self.beta, self.proposals,
                                                          self.time_step)
        if proposals % 2:
            raise NegdError(f"proposals: antithetic proposals come in pairs, got an odd count {proposals}")
        for name, value in (("sigma", sigma), ("beta", beta), ("proposals", proposals),
                            ("time_step", time_step)):
            object.__setattr__(self, name, value)

    def init(self, params: Tensor, loss_fn: LossFn, *, seed: int = 0,
             realizations: int | None = None, realization: Tensor | None = None) -> State:
        return MeanFieldTwin(self.sigma, self.beta).init(params, loss_fn, seed=seed,
                                                         realizations=realizations, realization=realization)

    def smoothed_gradient(self, state: State, loss_fn: LossFn) -> tuple[Tensor, Tensor]:
        """(grad U_sigma [R, N], its standard error [R, N]) at x, float64."""
        xi = directions(state, self.proposals // 2, rng.STREAM_SMOOTHED).to(torch.float64)
        plus = _losses(state, loss_fn, self.sigma * xi)
        minus = _losses(state, loss_fn, -self.sigma * xi)
        u = ((plus - minus) / (2 * self.sigma))[..., None] * xi
        return u.mean(dim=1), u.std(dim=1) / math.sqrt(u.shape[1])

    def drift(self, grad: Tensor) -> Tensor:
        """The twin's displacement per NE step for a smoothed gradient [R, N]."""
        if math.isinf(self.beta):
            norm = torch.linalg.vector_norm(grad, dim=1, keepdim=True)
            norm = norm.clamp(min=torch.finfo(grad.dtype).tiny)
            return -(self.sigma / math.sqrt(2 * math.pi)) * grad / norm
        return -(self.beta * self.sigma**2 / 2) * grad

    def step(self, state: State, loss_fn: LossFn) -> State:
        grad, _ = self.smoothed_gradient(state, loss_fn)
        params = (state.params.to(torch.float64) + self.time_step * self.drift(grad)).to(state.params.dtype)
        return state.replace(params=params, loss=evaluate(step_loss(loss_fn, state), params),
                             step=state.step + 1, accepted=torch.ones_like(state.accepted))
