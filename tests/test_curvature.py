"""negd.rules.CurvatureAwareTwin: Hutchinson c on a known Hessian, drift sigma phi(c), limits."""

from __future__ import annotations

import math

import pytest
import torch

from negd import theory
from negd.rules import CurvatureAwareTwin, NormalizedGradientDescent


def test_isotropic_quadratic_drift_is_sigma_phi_c_perp():
    # U = (k/2)|x|^2 in N = 400: tr(P H P) = k (N - 1) for every probe direction set off u up to the
    # Rademacher fluctuation k (u.v)^2 (relative O(1/N)); c_perp = sigma k (N - 1)/(2 |g|).
    n, k, sigma, r = 400, 2.0, 0.01, 3
    x0 = torch.randn(r, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = x0 / x0.norm(dim=1, keepdim=True) * 2.0  # |g| = k |x| = 4
    loss = lambda p: 0.5 * k * (p * p).sum(1)  # noqa: E731
    rule = CurvatureAwareTwin(sigma, time_step=3.0, n_probes=8)
    state = rule.init(x0, loss, seed=1)
    c_perp = sigma * k * (n - 1) / (2 * 4.0)
    assert torch.allclose(rule.c(state), torch.full((r,), c_perp, dtype=torch.float64), rtol=2e-2)
    moved = rule.step(state, loss).params - x0
    expected = -3.0 * sigma * theory.normal_pdf(rule.c(state))[:, None] * x0 / x0.norm(dim=1, keepdim=True)
    assert torch.allclose(moved, expected, rtol=1e-9, atol=1e-15)
    full = CurvatureAwareTwin(sigma, curvature="c")
    assert torch.allclose(full.c(full.init(x0, loss, seed=1)),
                          torch.full((r,), sigma * k * n / 8.0, dtype=torch.float64), rtol=2e-2)


def test_flat_curvature_gives_the_normalized_twin():
    g = torch.tensor([3.0, -4.0], dtype=torch.float64)
    loss = lambda p: p @ g  # noqa: E731  H = 0: c = 0
    twin = CurvatureAwareTwin(0.1, time_step=2.0, n_probes=2)
    plain = NormalizedGradientDescent(alpha=twin.normalized_rate)
    a = twin.init(torch.zeros(2, 2, dtype=torch.float64), loss)
    b = plain.init(torch.zeros(2, 2, dtype=torch.float64), loss)
    for _ in range(3):
        a, b = twin.step(a, loss), plain.step(b, loss)
    assert torch.allclose(a.params, b.params, rtol=1e-12)
    assert twin.normalized_rate == pytest.approx(2.0 * 0.1 / math.sqrt(2 * math.pi))


def test_refresh_keeps_the_trace_between_estimates():
    loss = lambda p: 0.5 * (p * p).sum(1)  # noqa: E731
    rule = CurvatureAwareTwin(0.01, n_probes=2, refresh=3)
    state = rule.init(torch.ones(1, 8, dtype=torch.float64), loss, seed=0)
    terms = []
    for _ in range(4):
        state = rule.step(state, loss)
        terms.append(float(state.extras["curvature_term"][0]))
    assert terms[0] == terms[1]  # kept until step 3 re-estimates it
