"""negd.ties: exact ties of piecewise-constant losses (greedy policies), and the sigma that resolves them."""

from __future__ import annotations

import math

import pytest
import torch

from negd.diagnostics.ties import tie_fraction, tie_scan
from negd.envs import ControlLoss
from negd.losses.models import MLPSpec
from negd.validation import NegdError


def _staircase(params: torch.Tensor) -> torch.Tensor:
    return torch.floor(params[:, 0].to(torch.float64))  # steps of width 1


def test_tie_fraction_of_a_staircase_matches_the_gaussian_probability_within_4_se():
    params = torch.full((4, 1), 0.5, dtype=torch.float64)  # mid-step: ties iff |sigma xi| < 1/2
    for sigma in (0.2, 0.5, 1.0):
        t, se = tie_fraction(_staircase, params, sigma, probes=2000, seed=1)
        want = math.erf(0.5 / (sigma * math.sqrt(2)))
        assert ((t - want).abs() < 4 * se).all(), (sigma, t, want)


def test_a_smooth_loss_never_ties_and_a_nan_is_not_a_tie():
    params = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t, _ = tie_fraction(lambda p: (p**2).sum(dim=1), params, 1e-3)
    assert (t == 0).all()
    t, _ = tie_fraction(lambda p: torch.full((p.shape[0],), math.nan, dtype=torch.float64), params, 1e-3)
    assert (t == 0).all()


def test_greedy_cartpole_ties_at_small_sigma_and_the_scan_names_a_resolving_sigma():
    spec = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
    loss = ControlLoss("CartPole-v1", spec, episodes=4)
    params = torch.randn(2, spec.n_params, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    scan = tie_scan(loss, params, [1e-4, 1e-2, 1.0, 3.0], probes=48, seed=2, at_sigma=1e-4)
    mean = scan.fraction.mean(dim=1)
    assert mean[0] > 0.9 and mean[-1] < 0.5 and scan.resolving_sigma is not None
    assert scan.resolving_sigma >= 1e-2
    assert scan.message.startswith("ties: at sigma = 0.0001,") and "resolves it" in scan.message
    again = tie_scan(loss, params, [1e-4, 1e-2, 1.0, 3.0], probes=48, seed=2, at_sigma=1e-4)
    assert torch.equal(again.fraction, scan.fraction)  # same seed, same numbers
    assert set(scan.to_dict()) >= {"sigmas", "tie_fraction", "resolving_sigma", "message"}


def test_bad_input_gets_one_line():
    params = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(NegdError, match="^sigma:"):
        tie_fraction(_staircase, params, -1.0)
    with pytest.raises(NegdError, match="^sigmas:"):
        tie_scan(_staircase, params, [])
    with pytest.raises(NegdError, match="^loss_fn:"):
        tie_fraction(lambda p: torch.zeros(p.shape[0], 2), params, 0.1)
