"""Noise policies of MinibatchNeuroevolution (paired, fresh, stale) against negd.theory.minibatch.

The statistical tests use a loss with known noise: U(x) (linear or quadratic) plus s n, where n is a
standard normal that is a pure function of (seed, realization, step, draw) (negd.rng streams of the
test's own, one per draw). Tolerances: 4 standard errors; each test also checks that it resolves a
wrong prediction (> 8 SE away), so that it can fail.
"""

from __future__ import annotations

import math

import pytest
import torch

from negd import rng
from negd.envs import ControlLoss
from negd.envs.base import episode_starts
from negd.losses.minibatch import STREAM_MINIBATCH_SECOND, MinibatchLoss, batch_indices
from negd.losses.models import MLPSpec
from negd.rules import MinibatchNeuroevolution
from negd.theory.minibatch import (
    fresh_acceptance,
    fresh_beta_eff,
    fresh_drift,
    fresh_stationary_beta,
    measured_beta_eff,
    stale_beta_eff,
    stale_drift,
)
from negd.validation import NegdError

K_SE = 4  # tolerance of every statistical comparison, in standard errors
_STREAM_FIRST, _STREAM_SECOND = 100, 101  # the test loss's noise draws (unused by negd)


class NoisyLoss:
    """U(params) + s n(seed, realization, step, draw): the per-step protocol with two draws."""

    def __init__(self, u, s: float, second: bool = True) -> None:
        self.u, self.s = u, s
        if not second:
            self.second_draw = None  # a loss with a per-step draw but no second one

    def _draw(self, state, stream: int):
        def loss_fn(params: torch.Tensor) -> torch.Tensor:
            noise = rng.normal(state.seed, state.realization, state.step, 1, stream=stream)[:, 0]
            return self.u(params) + self.s * noise.double()
        return loss_fn

    def at(self, state):
        return self._draw(state, _STREAM_FIRST)

    def second_draw(self, state):
        return self._draw(state, _STREAM_SECOND)

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return self.u(params)


def _linear(g: torch.Tensor):
    return lambda params: params.double() @ g


def _one_step(mode: str, beta: float, c: float, s: float, r: int, sigma: float = 0.1, seed: int = 3):
    """Displacements along -g/|g| (units of sigma) and acceptance of one step from x = 0."""
    g = torch.tensor([0.6, -0.8, 0.0, 0.0], dtype=torch.float64) * (c / sigma)
    loss = NoisyLoss(_linear(g), s)
    rule = MinibatchNeuroevolution(sigma, beta=beta, mode=mode)
    state = rule.init(torch.zeros(4, dtype=torch.float64), loss, seed=seed, realizations=r)
    if mode == "stale":  # the stored loss is on step 0's draw; compare on step 1's
        state = state.replace(step=1)
    moved = rule.step(state, loss)
    return -(moved.params @ (g / g.norm())) / sigma, moved.accepted.double()


def _predicted(mode: str, beta: float, c: float, s: float) -> float:
    if mode == "paired":  # additive noise is common to both sides and cancels: the noise-free drift
        return fresh_drift(c, 0.0, beta)
    if mode == "stale" and math.isinf(beta):  # its own formula, s' = SD of the difference = sqrt(2) s
        return stale_drift(c / (math.sqrt(2) * s))
    return fresh_drift(c, s, beta)  # fresh; stale's single step is the same Gaussian model


@pytest.mark.parametrize("mode,beta", [("paired", math.inf), ("fresh", math.inf), ("stale", math.inf),
                                       ("paired", 1.0), ("fresh", 1.0), ("stale", 1.0)])
def test_one_step_drift_matches_each_policy(mode, beta):
    # c = sigma |g| = 1, s = 1 (a = 0.71 for fresh/stale), 40 000 realizations of one step (160 000
    # at finite beta, where the Metropolis uniforms add their own spread).
    c, s, r = 1.0, 1.0, 40_000 if math.isinf(beta) else 160_000
    d, acc = _one_step(mode, beta, c, s, r)
    se = d.std().item() / math.sqrt(r)
    predicted = _predicted(mode, beta, c, s)
    assert abs(d.mean().item() - predicted) <= K_SE * se
    # The test can fail: a noise of variance s^2 instead of 2 s^2 (stale's formula read with the
    # per-evaluation s) and, for paired, the fresh prediction are > 8 SE away.
    wrong = fresh_drift(c, s, beta) if mode == "paired" else fresh_drift(c, s / math.sqrt(2), beta)
    assert abs(d.mean().item() - wrong) > 2 * K_SE * se
    if mode != "paired":
        p = fresh_acceptance(c, s, beta)
        assert abs(acc.mean().item() - p) <= K_SE * math.sqrt(p * (1 - p) / r)


def test_fresh_beta_eff_from_the_small_signal_drift():
    # a = sigma |g|/(sqrt 2 s) = 0.14: beta measured from the drift vs 1/(s sqrt(pi)) (finite-a
    # factor 1/sqrt(1 + a^2) included); 200 000 realizations, 4 SE. Stale's formula with the
    # per-evaluation s, sqrt(2/pi)/s, is > 8 SE away.
    c, s, sigma, r = 0.2, 1.0, 0.1, 200_000
    d, _ = _one_step("fresh", math.inf, c, s, r, sigma=sigma)
    grad_norm = c / sigma
    beta = measured_beta_eff(sigma * d.mean().item(), sigma, grad_norm)
    beta_se = measured_beta_eff(sigma * d.std().item() / math.sqrt(r), sigma, grad_norm)
    a = c / (math.sqrt(2) * s)
    assert abs(beta - fresh_beta_eff(s) / math.sqrt(1 + a * a)) <= K_SE * beta_se
    assert abs(beta - stale_beta_eff(s) / math.sqrt(1 + a * a)) > 2 * K_SE * beta_se


@pytest.mark.parametrize("beta", [math.inf, 1.0])
def test_fresh_stationary_law_of_a_harmonic_well(beta):
    # U = x^2/2 in one dimension plus fresh noise s = 1: after ~8 relaxation times of the variance,
    # Var(x) = 1/beta_stat (small-sigma diffusion limit), not 1/beta_eff (a factor ~2 away).
    s, sigma, r = 1.0, 0.2, 4000
    loss = NoisyLoss(lambda p: 0.5 * (p.double() ** 2).sum(dim=1), s)
    rule = MinibatchNeuroevolution(sigma, beta=beta, mode="fresh")
    beta_stat = fresh_stationary_beta(s, beta)
    diffusion = sigma**2 * fresh_acceptance(0.0, s, beta) / 2
    steps = math.ceil(4 / (diffusion * beta_stat))  # variance relaxes at 2 D beta_stat per step
    state = rule.init(torch.zeros(1, dtype=torch.float64), loss, seed=11, realizations=r)
    for _ in range(steps):
        state = rule.step(state, loss)
    x2 = state.params[:, 0].double() ** 2
    var, se = x2.mean().item(), x2.std().item() / math.sqrt(r)
    assert abs(var - 1 / beta_stat) <= K_SE * se
    assert abs(var - 1 / fresh_beta_eff(s, beta)) > 2 * K_SE * se


def test_second_batches_differ_and_are_reproducible():
    first = batch_indices(7, torch.arange(50), 3, 40, 8)
    second = batch_indices(7, torch.arange(50), 3, 40, 8, stream=STREAM_MINIBATCH_SECOND)
    assert torch.equal(second, batch_indices(7, torch.arange(50), 3, 40, 8, stream=STREAM_MINIBATCH_SECOND))
    assert torch.equal(batch_indices(7, torch.tensor([9, 2]), 3, 40, 8, stream=STREAM_MINIBATCH_SECOND),
                       second[[9, 2]])  # independent of R and chunking
    same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(first, second, strict=True)]
    assert not any(same)
    # The overlap of two independent batches of 8 of 40 points: mean 8 * 8/40 = 1.6 points.
    overlap = torch.tensor([len(set(a.tolist()) & set(b.tolist())) for a, b in zip(first, second,
                                                                                    strict=True)])
    assert abs(overlap.double().mean().item() - 1.6) <= K_SE * overlap.double().std().item() / math.sqrt(50)
    x = torch.linspace(-1, 1, 40)[:, None]
    loss = MinibatchLoss.for_mlp(MLPSpec(depth=1, width=3), x, torch.sin(x), batch_size=8)
    rule = MinibatchNeuroevolution(0.1, mode="fresh")
    state = rule.init(torch.zeros(loss.n_params, dtype=torch.float64) + 0.3, loss, seed=7, realizations=5)
    params = state.params
    assert not torch.equal(loss.second_draw(state)(params), loss.at(state)(params))
    assert torch.equal(loss.second_draw(state)(params), loss.on_batches(7, torch.arange(5), 0,
                                                                       STREAM_MINIBATCH_SECOND)(params))


def test_control_second_draw_plays_episodes_e_to_2e():
    spec = MLPSpec(depth=1, width=4, in_features=3, out_features=1)
    loss = ControlLoss("Pendulum-v1", spec, episodes=2)
    twice = ControlLoss("Pendulum-v1", spec, episodes=4)
    params = torch.randn(3, spec.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rule = MinibatchNeuroevolution(0.1, mode="fresh")
    state = rule.init(params, loss, seed=5)
    second = loss.second_draw(state)(params)
    assert torch.equal(second, loss.second_draw(state)(params))  # reproducible
    assert not torch.equal(second, loss.at(state)(params))
    expected = -twice.returns(params, 5, torch.arange(3), 0)[:, 2:].mean(dim=1)
    assert torch.equal(second, expected)  # episodes 2, 3 of (seed, r, step)
    starts = episode_starts(loss.env, 5, torch.arange(3), 0, 4)
    assert not torch.equal(starts[:, :2], starts[:, 2:])


def _run(mode: str, loss, r: int, steps: int, seed: int = 2):
    rule = MinibatchNeuroevolution(0.1, mode=mode)
    state = rule.init(torch.zeros(4, dtype=torch.float64), loss, seed=seed, realizations=r)
    for _ in range(steps):
        state = rule.step(state, loss)
    return state


def test_fresh_is_deterministic_and_independent_of_chunking():
    loss = NoisyLoss(_linear(torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)), 0.3)
    a, b = _run("fresh", loss, 6, 20), _run("fresh", loss, 6, 20)
    assert torch.equal(a.params, b.params) and torch.equal(a.loss, b.loss)
    assert not torch.equal(a.params, _run("fresh", loss, 6, 20, seed=3).params)
    assert not torch.equal(a.params, _run("paired", loss, 6, 20).params)
    rule = MinibatchNeuroevolution(0.1, mode="fresh")
    whole = rule.init(torch.zeros(4, dtype=torch.float64), loss, seed=2, realizations=6)
    parts = [whole.chunk(0, 2), whole.chunk(2, 6)]
    for _ in range(20):
        whole, parts = rule.step(whole, loss), [rule.step(p, loss) for p in parts]
    assert torch.equal(type(whole).concat(parts).params, a.params)
    assert rule.evaluations_per_step == 2


def test_fresh_control_run_is_reproducible():
    spec = MLPSpec(depth=1, width=4, in_features=3, out_features=1)
    loss = ControlLoss("Pendulum-v1", spec, episodes=2)
    rule = MinibatchNeuroevolution(0.2, mode="fresh")
    start = torch.zeros(spec.n_params, dtype=torch.float64)
    runs = []
    for _ in range(2):
        state = rule.init(start, loss, seed=4, realizations=3)
        for _ in range(3):
            state = rule.step(state, loss)
        runs.append(state)
    assert torch.equal(runs[0].params, runs[1].params) and torch.equal(runs[0].loss, runs[1].loss)


def test_a_nan_loss_is_never_accepted_in_fresh_mode():
    g = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    base = NoisyLoss(_linear(g), 0.5)

    class HalfBroken(NoisyLoss):  # row 1's proposals score NaN; row 2's parent scores NaN
        def at(self, state):
            f = super().at(state)
            return lambda p: torch.where(torch.arange(p.shape[0]) == 1, math.nan, f(p))

        def second_draw(self, state):
            f = super().second_draw(state)
            return lambda p: torch.where(torch.arange(p.shape[0]) == 2, math.nan, f(p))

    loss = HalfBroken(base.u, base.s)
    rule = MinibatchNeuroevolution(0.1, mode="fresh")
    state = rule.init(torch.zeros(4, dtype=torch.float64), base, seed=1, realizations=4)
    start = state.params.clone()
    for _ in range(10):
        state = rule.step(state, loss)
        assert not state.accepted[1]
        assert bool(state.accepted[2])  # a finite proposal beats a NaN parent (as in every mode)
    assert torch.equal(state.params[1], start[1])
    assert torch.isfinite(state.loss[[0, 2, 3]]).all()


def test_a_loss_without_a_second_draw_is_refused_in_one_line():
    loss = NoisyLoss(_linear(torch.ones(4, dtype=torch.float64)), 0.1, second=False)
    rule = MinibatchNeuroevolution(0.1, mode="fresh")
    with pytest.raises(NegdError, match="second_draw") as err:
        rule.init(torch.zeros(4, dtype=torch.float64), loss, realizations=2)
    assert "\n" not in str(err.value) and "NoisyLoss" in str(err.value)
    paired = MinibatchNeuroevolution(0.1, mode="paired")
    state = paired.init(torch.zeros(4, dtype=torch.float64), loss, realizations=2)
    with pytest.raises(NegdError, match="second_draw"):
        rule.step(state, loss)
    # A deterministic loss (no per-step draw) is its own second draw: fresh is the paper's rule.
    plain = _run("fresh", _linear(torch.ones(4, dtype=torch.float64)), 3, 5)
    assert torch.isfinite(plain.loss).all()


def test_theory_limits_and_bad_input():
    assert fresh_beta_eff(2.0) == pytest.approx(1 / (2 * math.sqrt(math.pi)))
    assert fresh_beta_eff(1e-12, 3.0) == pytest.approx(3.0)  # no noise: beta itself
    assert fresh_beta_eff(1.0, 1e8) == pytest.approx(fresh_beta_eff(1.0), rel=1e-9)
    assert fresh_stationary_beta(1.0) == pytest.approx(2 * fresh_beta_eff(1.0))
    assert fresh_stationary_beta(1e-12, 2.0) == pytest.approx(2.0)
    assert fresh_drift(1.0, 0.0) == pytest.approx(1 / math.sqrt(2 * math.pi))  # noise-free beta = inf
    assert fresh_drift(1.0, 1.0) == pytest.approx(stale_drift(1 / math.sqrt(2)))
    assert fresh_drift(1e-6, 1.0) / 1e-6 == pytest.approx(fresh_beta_eff(1.0) / 2, rel=1e-6)
    assert fresh_drift(0.7, 0.4, 1e9) == pytest.approx(fresh_drift(0.7, 0.4), rel=1e-6)
    assert fresh_acceptance(0.0, 0.0, 2.0) == pytest.approx(1.0)
    for bad in (lambda: fresh_beta_eff(-1.0), lambda: fresh_drift(-0.1, 1.0),
                lambda: fresh_drift(0.1, math.nan), lambda: fresh_stationary_beta(1.0, 0.0)):
        with pytest.raises(NegdError):
            bad()
