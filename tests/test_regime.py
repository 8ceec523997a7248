"""Tests of negd.diagnostics.regime: Hutchinson trace, |g|, z and c, verdicts and input checks."""

from __future__ import annotations

import math

import pytest
import torch

from negd import theory
from negd.diagnostics.regime import Regime, hutchinson_trace, regime_check
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, load_flat_params, paper_init, torch_default_init
from negd.losses.module import ModuleLoss
from negd.rules import Neuroevolution
from negd.tasks import get_task
from negd.validation import NegdError


class QuadraticLoss:
    """U(x) = x.A x/2 per realization (Hessian A)."""

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((params @ self.a) * params).sum(dim=1)


def _dense_spd(n: int, seed: int) -> torch.Tensor:
    m = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return m @ m.T / n + torch.eye(n, dtype=torch.float64)


def test_hutchinson_trace_of_isotropic_quadratic_is_exact() -> None:
    # Rademacher probes: v.(kI)v = kN for every probe, so the estimate is exact with SE 0.
    n, k = 1000, 2.5
    x = torch.randn(3, n, dtype=torch.float64)
    trace, se, trace_sq = hutchinson_trace(QuadraticLoss(k * torch.eye(n, dtype=torch.float64)), x,
                                           n_probes=4)
    assert torch.allclose(trace, torch.full((3,), k * n, dtype=torch.float64))
    assert torch.all(se == 0)
    assert torch.allclose(trace * trace / trace_sq, torch.full((3,), float(n), dtype=torch.float64))


def test_hutchinson_trace_of_dense_quadratic_within_se() -> None:
    n = 200
    a = _dense_spd(n, seed=1)
    x = torch.randn(4, n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    trace, se, trace_sq = hutchinson_trace(QuadraticLoss(a), x, n_probes=32, seed=3)
    assert torch.all(se > 0)
    exact = torch.trace(a).item()
    assert torch.all((trace - exact).abs() <= 4 * se), (trace, exact, se)
    # tr(A^2) = E|Av|^2: its probe average is within a few percent here (32 probes).
    assert torch.allclose(trace_sq, torch.full_like(trace_sq, torch.trace(a @ a).item()), rtol=0.1)


def test_regime_check_on_quadratic_gives_chosen_z_and_c() -> None:
    n, k, sigma, c_target = 1000, 1.0, 0.01, 0.3
    grad_norm = sigma * k * n / (2 * c_target)
    x0 = torch.full((n,), grad_norm / (k * math.sqrt(n)), dtype=torch.float64)
    loss = QuadraticLoss(k * torch.eye(n, dtype=torch.float64))
    beta = 2.0 / (sigma * grad_norm)  # z = 2

    result = regime_check(loss, x0, sigma, beta, n_probes=4)
    assert isinstance(result, Regime)
    assert result.grad_norm.item() == pytest.approx(grad_norm)
    assert result.z.item() == pytest.approx(2.0)
    # Probes projected off g see k (N - (u.v)^2): a relative error of order 1/N, within its SE.
    assert abs(result.c.item() - c_target) <= 4 * result.c_se.item() + 1e-12
    assert result.c.item() == pytest.approx(c_target, rel=3e-3)
    assert result.c_spread.item() == pytest.approx(c_target * math.sqrt(2 / n), rel=3e-3)  # c sqrt(2/n_eff)
    # u.H.u = k exactly, so c_perp = c (1 - 1/N): predictions use c_perp.
    assert result.grad_curvature.item() == pytest.approx(k)
    c_perp = result.c_perp.item()
    assert c_perp == pytest.approx(c_target * (1 - 1 / n), rel=3e-3)
    assert result.acceptance_predicted.item() == pytest.approx(theory.curvature_acceptance(c_perp, 2.0))
    assert result.drift_factor.item() == pytest.approx(theory.curvature_drift_factor(c_perp, 2.0))
    assert not result.all_apply and "z = beta sigma |g|" in result.message and "|c_perp|" in result.message

    at_inf = regime_check(loss, x0, sigma, math.inf, n_probes=4)
    assert at_inf.acceptance_predicted.item() == pytest.approx(theory.normal_cdf(-c_perp))
    assert at_inf.drift_factor.item() == pytest.approx(math.exp(-c_perp**2 / 2))
    assert "z =" not in at_inf.message and "|c_perp|" in at_inf.message

    small = regime_check(loss, x0, sigma / 100, math.inf, n_probes=4)  # c = 0.003
    assert small.all_apply and "applies" in small.message
    # Per-parameter sigma equal to a scalar gives the same numbers.
    same = regime_check(loss, x0, torch.full((n,), sigma, dtype=torch.float64), beta, n_probes=4)
    assert same.z.item() == pytest.approx(2.0) and same.c_perp.item() == pytest.approx(c_perp)


def test_indefinite_hessian_fails_on_curvature_spread() -> None:
    # H = diag(+k, -k, ...): tr H = 0 (c = 0) although the curvature term of dU is large.
    n, k, sigma = 100, 1.0, 0.1
    a = torch.diag(torch.tensor([k, -k] * (n // 2), dtype=torch.float64))
    x0 = torch.full((n,), 0.01, dtype=torch.float64)
    from negd.theory.population import GaussianScopeWarning

    with pytest.warns(GaussianScopeWarning, match="anisotropic"):
        result = regime_check(QuadraticLoss(a), x0, sigma, math.inf, n_probes=16)
    assert abs(result.c.item()) <= 4 * result.c_se.item()
    expected = sigma * math.sqrt(k * k * n / 2) / torch.linalg.vector_norm(a @ x0).item()
    assert result.c_spread.item() == pytest.approx(expected, rel=0.02)  # (u.v)^2/N noise
    assert not result.all_apply and "c_spread" in result.message and "anisotropic" in result.message
    # the probes' error carried into the prediction: (Phi(-(c - se)) - Phi(-(c + se)))/2 at beta = inf
    c, se = result.c_perp.item(), result.c_se.item()
    phi = lambda x: 0.5 * math.erfc(x / math.sqrt(2))  # noqa: E731  (Phi(-x))
    assert se > 0 and result.acceptance_predicted_se.item() == pytest.approx((phi(c - se) - phi(c + se)) / 2,
                                                                             rel=1e-9)


def test_per_parameter_sigma_uses_scaled_gradient_and_hessian() -> None:
    n = 6
    k = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=torch.float64)
    sig = torch.tensor([0.01, 0.02, 0.01, 0.03, 0.02, 0.01], dtype=torch.float64)
    x0 = torch.tensor([1.0, -1.0, 2.0, 0.5, -0.5, 1.0], dtype=torch.float64)
    result = regime_check(QuadraticLoss(torch.diag(k)), x0, sig, math.inf, n_probes=32)
    w = sig * k * x0  # S g
    u2 = (w / w.norm()) ** 2
    expected = ((sig**2 * k).sum() - (sig**2 * u2 * k).sum()) / (2 * w.norm())
    assert result.c_se.item() > 0
    assert abs(result.c_perp.item() - expected.item()) <= 4 * result.c_se.item()
    # u.(S H S).u / sigma_ref^2 is exact (one Hessian-vector product).
    assert result.sigma**2 * result.grad_curvature.item() == pytest.approx((sig**2 * u2 * k).sum().item())
    assert result.sigma * result.grad_norm.item() == pytest.approx(w.norm().item())
    assert n == x0.numel()


def test_predicted_acceptance_matches_one_step_on_mlp() -> None:
    # tanh MLP 1x30 at beta = inf: one neuroevolution step from a shared start, 10000 realizations.
    # Every 10th point of the task keeps the 10^4 forward passes cheap.
    spec, task = MLPSpec(depth=1, width=30), get_task("sin2pi")
    loss = MLPLoss(spec, task.inputs[::10], task.targets[::10])
    x0 = paper_init(spec.n_params, 0.1, seed=0).double()
    sigma, r = 0.03, 10_000
    result = regime_check(loss, x0, sigma, math.inf, n_probes=64, seed=2)
    rule = Neuroevolution(sigma=sigma)
    state = rule.init(x0, loss, realizations=r, seed=4)
    measured = rule.step(state, loss).accepted.double().mean().item()
    binomial_se = math.sqrt(measured * (1 - measured) / r)
    # SE: binomial, plus the Hutchinson error of c_perp propagated through Phi (slope phi(c)).
    se = math.hypot(binomial_se, theory.normal_pdf(result.c_perp.item()) * result.c_se.item())
    assert abs(measured - result.acceptance_predicted.item()) <= 4 * se, (measured, result.message)

    # With the exact trace: Phi(-c_perp) is within 4 binomial SE, Phi(-c) is not (u.H.u is a
    # large part of tr H here, see negd.diagnostics.regime).
    hessian = torch.autograd.functional.hessian(lambda p: loss(p[None])[0], x0, vectorize=True)
    grad_norm = result.grad_norm.item()
    c_exact = sigma * torch.trace(hessian).item() / (2 * grad_norm)
    c_perp_exact = c_exact - sigma * result.grad_curvature.item() / (2 * grad_norm)
    assert abs(measured - theory.normal_cdf(-c_perp_exact)) <= 4 * binomial_se
    assert abs(measured - theory.normal_cdf(-c_exact)) > 4 * binomial_se


@pytest.fixture(scope="module")
def mlp_problem():
    spec = MLPSpec(depth=2, width=6)  # 61 parameters: the exact Hessian is cheap
    task = get_task("sin2pi")
    params = torch_default_init(spec, seed=0, realizations=4)
    return spec, task, params


def test_regime_check_on_mlp_matches_autograd(mlp_problem) -> None:
    spec, task, params = mlp_problem
    sigma, beta = 1e-3, 50.0
    loss = MLPLoss(spec, task.inputs, task.targets)
    result = regime_check(loss, params, sigma, beta, n_probes=6, seed=1)

    # |g| of realization 1 from an ordinary nn.Module backward pass.
    model = load_flat_params(spec.module(), params[1])
    mse = ((model(task.inputs) - task.targets) ** 2).mean()
    direct = torch.sqrt(sum((p.grad**2).sum() for p in _grads(model, mse))).item()
    assert result.grad_norm[1].item() == pytest.approx(direct, rel=1e-4)

    assert result.z.shape == (4,) and torch.all(torch.isfinite(result.c))
    assert torch.allclose(result.z, beta * sigma * result.grad_norm)
    assert torch.allclose(result.c, sigma * result.trace_hessian / (2 * result.grad_norm))
    assert torch.all((result.acceptance_predicted > 0) & (result.acceptance_predicted <= 1))
    assert len(result.reasons) == 4 and isinstance(result.to_dict()["z"], list)

    # The exact trace of realization 0 (autograd Hessian) lies within 4 SE of the estimate.
    hessian = torch.autograd.functional.hessian(lambda p: loss(p[None])[0], params[0].double(),
                                             vectorize=True)
    exact = torch.trace(hessian).item()
    assert abs(result.trace_hessian[0].item() - exact) <= 4 * result.trace_hessian_se[0].item() + 1e-4

    # ModuleLoss (double backward through vmap + functional_call) gives the same estimate.
    module_result = regime_check(ModuleLoss(spec.module(), task.inputs, task.targets), params, sigma,
                                 beta, n_probes=6, seed=1)
    assert torch.allclose(module_result.grad_norm, result.grad_norm, rtol=1e-4)
    assert torch.allclose(module_result.trace_hessian, result.trace_hessian, rtol=1e-3, atol=1e-3)


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.nn.Parameter]:
    loss.backward()
    return list(model.parameters())


def test_regime_check_is_reproducible(mlp_problem) -> None:
    spec, task, params = mlp_problem
    loss = MLPLoss(spec, task.inputs, task.targets)
    a = regime_check(loss, params, 1e-2, math.inf, n_probes=4, seed=9)
    b = regime_check(loss, params, 1e-2, math.inf, n_probes=4, seed=9)
    assert torch.equal(a.trace_hessian, b.trace_hessian) and a.message == b.message


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"sigma": -1.0}, "sigma"), ({"beta": 0.0}, "beta"), ({"n_probes": 1}, "n_probes"),
    ({"z_max": 0.0}, "z_max"), ({"c_max": -1.0}, "c_max"), ({"seed": -3}, "seed"),
    ({"params": torch.full((3,), math.nan)}, "params"), ({"params": torch.ones(2, 2, 2)}, "params"),
    ({"sigma": torch.ones(5)}, "sigma"),
])
def test_bad_input_names_the_argument(kwargs: dict, field: str) -> None:
    args = {"loss_fn": QuadraticLoss(torch.eye(3, dtype=torch.float64)),
            "params": torch.ones(3, dtype=torch.float64), "sigma": 0.1, "beta": 1.0}
    args.update(kwargs)
    with pytest.raises(NegdError, match=f"^{field}:"):
        regime_check(**args)


def test_bad_loss_fn_is_reported() -> None:
    with pytest.raises(NegdError, match="^loss_fn:"):
        regime_check(lambda p: (p * p).sum(), torch.ones(2, 3), 0.1, 1.0)


# --- losses without a usable gradient: ties and black boxes (issue 15, item 4) ---

class BlackBoxQuadratic:
    """x.x/2 computed in numpy: the losses carry no autograd graph (a simulator, say)."""

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        x = params.detach().cpu().to(torch.float64).numpy()
        return torch.from_numpy(0.5 * (x * x).sum(axis=1))


class Staircase:
    """sum_i floor(x_i / h): piecewise constant, autograd gives a zero gradient almost everywhere."""

    def __init__(self, h: float) -> None:
        self.h = h

    def __call__(self, params: torch.Tensor) -> torch.Tensor:
        return torch.floor(params.to(torch.float64) / self.h).sum(dim=1)


def test_a_black_box_loss_gets_a_regime_without_gradient_numbers() -> None:
    from negd.losses.base import value_and_grad

    x = torch.full((3, 5), 0.7, dtype=torch.float64)
    with pytest.raises(NegdError, match=r"^loss: has no gradient") as err:
        value_and_grad(BlackBoxQuadratic(), x)
    assert "\n" not in str(err.value)
    loss, grad = value_and_grad(BlackBoxQuadratic(), x, missing_ok=True)
    assert grad is None and torch.allclose(loss, torch.full((3,), 0.5 * 5 * 0.49, dtype=torch.float64))

    check = regime_check(BlackBoxQuadratic(), x, 1e-3)
    assert not check.has_gradient and not check.all_apply
    assert check.z.isnan().all() and check.c_perp.isnan().all() and check.grad_norm.isnan().all()
    assert "no gradient" in check.message and "MeanFieldTwin" in check.message and "\n" not in check.message
    assert torch.equal(check.tie_fraction, torch.zeros(3, dtype=torch.float64))  # smooth: no ties
    assert check.resolving_sigma is None and check.to_dict()["has_gradient"] is False


def test_a_plateau_is_reported_with_the_sigma_that_resolves_it() -> None:
    from negd.diagnostics.ties import TIE_FRACTION_MAX, tie_fraction

    h = 0.1
    x = torch.rand(4, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma = 1e-4  # a move crosses a step edge with probability ~ 20 sigma sqrt(2/pi)/h: few do
    check = regime_check(Staircase(h), x, sigma, n_probes=32)
    assert check.has_gradient  # autograd gives zeros: |g| = 0, no drift to compare
    assert check.grad_norm.eq(0).all() and not check.all_apply
    assert float(check.tie_fraction.mean()) > 0.9
    found = check.resolving_sigma
    assert found is not None and "plateau" in check.message and f"sigma >= {found:.3g}" in check.message
    # The named sigma resolves the moves and half of it does not (the scan's grid is sigma x 2^k).
    assert float(tie_fraction(Staircase(h), x, found, probes=32)[0].mean()) <= TIE_FRACTION_MAX
    assert float(tie_fraction(Staircase(h), x, found / 2, probes=32)[0].mean()) > TIE_FRACTION_MAX
    assert "rounding" not in check.message  # every probe tied: nothing for rounding to flip


def test_tie_fraction_matches_its_expectation_within_4_se() -> None:
    """P(tie) = prod_i P(floor(x_i/h) unchanged by a N(0, sigma^2) move): at sigma = 2e-3 and 20
    coordinates about 0.6 of the moves tie; 256 probes x 4 rows, binomial SE, 4 SE allowed."""
    h, sigma, probes = 0.1, 2e-3, 256
    x = torch.rand(4, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    check = regime_check(Staircase(h), x, sigma, n_probes=probes)
    normal = torch.distributions.Normal(0.0, 1.0)
    lo = (torch.floor(x / h) * h - x) / sigma
    expected = (normal.cdf(lo + h / sigma) - normal.cdf(lo)).prod(dim=1)  # [R]
    assert 0.2 < float(expected.mean()) < 0.9  # an informative regime, not all or nothing
    se = torch.sqrt(expected * (1 - expected) / probes)
    assert ((check.tie_fraction - expected).abs() <= 4 * se).all(), (check.tie_fraction, expected, se)
    assert check.tie_fraction_se.shape == (4,)


def test_smooth_losses_report_no_ties() -> None:
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    check = regime_check(QuadraticLoss(_dense_spd(6, 0)), x, 1e-3)
    assert torch.equal(check.tie_fraction, torch.zeros(2, dtype=torch.float64))
    assert check.resolving_sigma is None and "ties" not in check.message and check.has_gradient


def test_greedy_cartpole_policy_is_a_plateau_at_small_sigma() -> None:
    from negd.envs import ControlLoss  # batched torch environments: no gymnasium needed

    spec = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
    loss = ControlLoss("CartPole-v1", spec, episodes=3)
    x = 0.1 * torch.randn(2, spec.n_params, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    check = regime_check(loss, x, 1e-3)
    assert not check.has_gradient and float(check.tie_fraction.mean()) == 1.0
    assert check.resolving_sigma is not None and check.resolving_sigma > 1e-3
    assert "rounding" not in check.message  # all ties: nothing for rounding to flip


def test_ties_false_skips_the_tie_probes_and_changes_nothing_else() -> None:
    h = 0.1
    x = torch.rand(2, 20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    calls = {"rows": 0}

    def counted(params: torch.Tensor) -> torch.Tensor:
        calls["rows"] += params.shape[0]
        return Staircase(h)(params)

    full = regime_check(counted, x, 1e-4, n_probes=8)
    with_ties = calls["rows"]
    calls["rows"] = 0
    bare = regime_check(counted, x, 1e-4, n_probes=8, ties=False)
    assert calls["rows"] < with_ties  # the tie probes and the plateau's scan are not evaluated
    assert bare.tie_fraction is None and bare.resolving_sigma is None and "ties" not in bare.message
    assert full.resolving_sigma is not None and "plateau" in full.message
    for name in ("grad_norm", "z", "c_perp", "loss_error", "decision_risk", "quantization"):
        torch.testing.assert_close(getattr(bare, name), getattr(full, name), rtol=0, atol=0, equal_nan=True)
