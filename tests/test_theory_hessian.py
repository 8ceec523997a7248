"""negd.theory.hessian: first order in sigma/(2|g|) with the full Hessian, against a control-variate
Monte Carlo of one neuroevolution step.

The estimator of a quantity E[f(dU)] is the sample mean of f(dU) - f(sigma |g| eta) (the linear-loss
value, whose mean is known exactly) plus that exact mean: the noise of the linear part cancels and
the curvature terms (relative size ~1e-4..1e-3) are resolved. 4 SE tolerances, fixed seeds.
"""

from __future__ import annotations

import math

import pytest
import torch

from negd import theory
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec
from negd.theory.hessian import first_order, k_moments
from negd.validation import NegdError


def _cv_step(delta_u, g: torch.Tensor, sigma: float, beta: float, r: int, seed: int):
    """(acceptance difference, along-u drift difference / sigma, across-u drift [N]) to the linear
    values, with their SEs, from r draws; ``delta_u(xi [r, N]) -> dU [r]`` (float64)."""
    xi = torch.randn(r, g.shape[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    u = g / g.norm()
    eta = xi @ u
    z = beta * sigma * float(g.norm())
    a = torch.exp(torch.clamp(-beta * delta_u(xi), max=0.0))
    a_lin = torch.exp(torch.clamp(-z * eta, max=0.0))
    diff = a - a_lin
    along = eta * diff
    across = (xi - eta[:, None] * u) * diff[:, None] * sigma
    se = lambda t: t.std(0) / math.sqrt(r)  # noqa: E731
    return (diff.mean(), se(diff)), (along.mean(), se(along)), (across.mean(0), se(across))


def test_k_moments_against_quadrature():
    integrate = pytest.importorskip("scipy.integrate")
    for z in (0.0, 0.3, 1.0, 4.0, 29.0, 31.0, 60.0):
        for k, value in enumerate(k_moments(z)):
            exact = integrate.quad(lambda e, k=k, z=z: e**k * math.exp(-e * e / 2 - z * e)
                                   / math.sqrt(2 * math.pi), 0, math.inf)[0]
            assert value == pytest.approx(exact, abs=1e-12)
    assert k_moments(1.0)[0] + 0.5 == pytest.approx(theory.linear_acceptance(1.0))


def test_anisotropic_quadratic_needs_the_u_h_u_term():
    # U = g.x + x.H.x/2 with H = diag(50, 1, ..., 1) in N = 20 and u tilted off the top eigenvector
    # (so that P H u != 0). epsilon tr H ~ 3e-4: second-order terms are below the SE.
    n, sigma, r, z = 20, 1e-5, 1_000_000, 1.0
    h = torch.ones(n, dtype=torch.float64)
    h[0] = 50.0
    g = torch.zeros(n, dtype=torch.float64)
    g[0], g[1] = 1.0, 0.3
    beta = z / (sigma * float(g.norm()))
    acc, along, across = _cv_step(lambda xi: sigma * (xi @ g) + 0.5 * sigma**2 * (xi * xi * h).sum(1),
                                  g, sigma, beta, r, seed=1)
    pred = first_order(g, torch.diag(h), sigma, beta)
    k0 = k_moments(z)[0]
    assert abs(acc[0].item() - (pred.acceptance - 0.5 - k0)) <= 4 * acc[1].item()
    assert abs(along[0].item() - (pred.along + z * k0)) <= 4 * along[1].item()
    scores = (across[0] - pred.across) / across[1]
    assert abs((scores**2).sum().item() - n) <= 4 * math.sqrt(2 * n)  # chi^2_N
    assert pred.across.norm() > 10 * across[1].norm()  # the across drift is resolved, not noise
    # The Gaussian form (c = sigma tr H/(2|g|)) is far off here: tr H K_0 instead of the u.H.u split.
    c = sigma * float(h.sum()) / (2 * float(g.norm()))
    gaussian = theory.curvature_acceptance(c, z) - theory.linear_acceptance(z)
    assert abs(acc[0].item() - gaussian) > 20 * acc[1].item()


def test_small_network_at_z_1():
    # A held-out 1-3-1 tanh MLP on 16 points (not a quadratic: the loss is evaluated exactly).
    spec = MLPSpec(depth=1, width=3)
    x = torch.linspace(-1, 1, 16, dtype=torch.float64)[:, None]
    loss = MLPLoss(spec, x, torch.cos(2 * x), backend="torch")
    x0 = torch.randn(spec.n_params, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    f = lambda p: loss(p[None])[0]  # noqa: E731
    g = torch.func.grad(f)(x0)
    hess = torch.func.hessian(f)(x0)
    sigma, r, z = 2e-4 * float(g.norm()), 400_000, 1.0
    beta = z / (sigma * float(g.norm()))
    base = f(x0)
    acc, along, across = _cv_step(lambda xi: loss(x0 + sigma * xi) - base, g, sigma, beta, r, seed=2)
    pred = first_order(g, hess, sigma, beta)
    k0 = k_moments(z)[0]
    assert abs(acc[0].item() - (pred.acceptance - 0.5 - k0)) <= 4 * acc[1].item()
    assert abs(along[0].item() - (pred.along + z * k0)) <= 4 * along[1].item()
    scores = (across[0] - pred.across) / across[1]
    n = spec.n_params
    assert abs((scores**2).sum().item() - n) <= 4 * math.sqrt(2 * n)


def test_beta_inf_limit_and_bad_input():
    g = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    h = torch.diag(torch.tensor([5.0, 1.0, 2.0], dtype=torch.float64))
    inf = first_order(g, h, 0.01, math.inf)
    assert inf.acceptance == pytest.approx(0.5 - 0.01 / 2 * 3.0 / math.sqrt(2 * math.pi))  # c_perp
    big = first_order(g, h, 0.01, 1e9)  # z = 1e7: corrections of order 1/z
    assert big.acceptance == pytest.approx(inf.acceptance, abs=1e-6)
    assert big.along == pytest.approx(inf.along, abs=1e-6)
    assert float(big.across.norm()) < 1e-9
    with pytest.raises(NegdError, match="hessian"):
        first_order(g, torch.eye(2), 0.01)
    with pytest.raises(NegdError, match="g:"):
        first_order(torch.zeros(3), h, 0.01)
    with pytest.raises(NegdError, match="z:"):
        k_moments(-1.0)
