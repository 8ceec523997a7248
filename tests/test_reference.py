"""External cross-check against the trajectories published by the paper's authors.

Whitelam, Selin, Park & Tamblyn, Nat. Commun. 12, 6317 (2021), data of their repository
(see ``../shared/reference/mc-gd-correspondence/README.md``): a 1-40-1 tanh net fitted to
sin(pi x) on 1001 points, normalized gradient descent with alpha = 1e-4 and zero-temperature
neuroevolution with sigma = sqrt(2 pi) * 1e-4, snapshots every 50 steps for 10^4 steps.

* negd's NormalizedGradientDescent must reproduce every GD snapshot (a deterministic check);
* negd's neuroevolution ensemble must agree in mean loss with the authors' ten independent
  trajectories (a statistical check: different random numbers, same distribution).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from negd import MLPLoss, MLPSpec, Neuroevolution, NormalizedGradientDescent, advance

ALPHA = 1e-4
SIGMA = math.sqrt(2 * math.pi) * ALPHA  # lambda = 1: one mutation step ~ one gradient step
SNAPSHOT_EVERY = 50
SPEC = MLPSpec(depth=1, width=40)


def load_problem(reference_dir: Path, backend: str = "torch") -> tuple[MLPLoss, np.lib.npyio.NpzFile]:
    data = np.load(reference_dir / "sin_pi_x.npz")
    x = torch.tensor(data["x"], dtype=torch.float32)
    y = torch.tensor(data["y"], dtype=torch.float32)
    return MLPLoss(SPEC, x, y, backend=backend), np.load(reference_dir / "gd_traj.npz")


def authors_ne_losses(reference_dir: Path, row: int) -> np.ndarray:
    return np.array([np.load(reference_dir / f"mc_traj_{k}.npz")["loss"][row] for k in range(10)])


def test_normalized_gradient_descent_reproduces_every_snapshot(reference_dir, single_thread):
    loss_fn, gd = load_problem(reference_dir)
    params, losses = gd["params"], gd["loss"]
    assert params.shape == (201, SPEC.n_params)
    rule = NormalizedGradientDescent(alpha=ALPHA)
    state = rule.init(torch.tensor(params[0], dtype=torch.float32), loss_fn, realizations=1)
    assert abs(state.loss.item() - losses[0]) < 1e-7
    worst_param, worst_loss = 0.0, 0.0
    for step in range(1, 10_001):
        loss_before = state.loss.item()
        state = rule.step(state, loss_fn)
        if step % SNAPSHOT_EVERY == 0:
            row = step // SNAPSHOT_EVERY
            deviation = np.abs(state.params[0].double().numpy() - params[row]).max()
            worst_param = max(worst_param, float(deviation))
            # The README: the stored loss of rows 1..200 is the loss *before* that step's update.
            worst_loss = max(worst_loss, abs(loss_before - losses[row]))
    print(f"\nGD vs authors: max |dx| = {worst_param:.2e}, max |dU| = {worst_loss:.2e}")
    assert worst_param < 1e-5
    assert worst_loss < 1e-6


def compare_neuroevolution(reference_dir: Path, realizations: int, steps: int) -> float:
    """z-score of negd's mean NE loss after ``steps`` against the authors' mean (also printed)."""
    assert steps % SNAPSHOT_EVERY == 0
    loss_fn, gd = load_problem(reference_dir, backend="auto")
    start = torch.tensor(gd["params"][0], dtype=torch.float32)
    assert np.array_equal(np.load(reference_dir / "mc_traj_0.npz")["params"][0], gd["params"][0])
    rule = Neuroevolution(SIGMA)
    state = rule.init(start, loss_fn, seed=2021, realizations=realizations)
    began = time.perf_counter()
    state = advance(rule, state, loss_fn, steps)
    seconds = time.perf_counter() - began
    # The state's loss is exactly what the loss function says of its parameters.
    assert torch.allclose(state.loss, loss_fn(state.params), rtol=1e-6, atol=0)
    ours = state.loss.double()
    ours_mean, ours_se = ours.mean().item(), ours.std().item() / math.sqrt(realizations)
    theirs = authors_ne_losses(reference_dir, steps // SNAPSHOT_EVERY)
    theirs_mean, theirs_se = theirs.mean(), theirs.std(ddof=1) / math.sqrt(len(theirs))
    combined = math.hypot(ours_se, theirs_se)
    z = (ours_mean - theirs_mean) / combined
    print(f"\nNE t={steps * ALPHA:g} (R={realizations}, {steps} steps, {seconds:.1f} s): "
          f"negd {ours_mean:.5f} +- {ours_se:.5f}, authors {theirs_mean:.5f} +- {theirs_se:.5f}, "
          f"combined SE {combined:.5f}, z = {z:+.2f}")
    return z


def test_neuroevolution_mean_loss_early_time(reference_dir):
    # A quick version of the check below, at t = 0.05 (500 steps, 64 realizations).
    assert abs(compare_neuroevolution(reference_dir, realizations=64, steps=500)) < 3


@pytest.mark.slow
def test_neuroevolution_mean_loss_at_t1(reference_dir):
    # The authors' settings: 10^4 steps (t = 1), shared start; 256 realizations.
    # Three combined standard errors.
    assert abs(compare_neuroevolution(reference_dir, realizations=256, steps=10_000)) < 3
