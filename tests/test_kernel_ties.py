"""The fused kernel's tie rule: at beta = inf a proposal of exactly the current loss (dU == 0) is
accepted (Whitelam et al. 2021: accept iff dU <= 0), and counted as a tie, exactly as the torch rule.

The loss really ties: a ReLU MLP without output bias whose hidden units 3..5 are dead (bias -100 on
inputs in [-1, 1]) contributes exactly 0 from them whatever their weights, and the live units' mutation
scale (1e-30) is below float32 resolution, so every proposal moves parameters (the dead units') and
leaves every output, and so the loss, bit for bit unchanged.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from negd import kernels
from negd.engine import fused_step_fn
from negd.losses.mlp import MLPLoss
from negd.losses.models import MLPSpec, paper_init
from negd.rules import Neuroevolution
from negd.tasks import get_task

pytestmark = pytest.mark.skipif(not kernels.available(),
                                reason="C kernels unavailable (no gcc, failed build, NEGD_DISABLE_KERNELS)")

SPEC = MLPSpec(depth=1, width=6, output_bias=False, activation="relu")
DEAD = [3, 4, 5]
R, STEPS = 8, 12


def _tied_problem(dtype):
    task = get_task("sin2pi", 50)
    start = paper_init(SPEC.n_params, 0.5, seed=2, realizations=R).to(dtype)
    (w1, b1), _, (w2, _) = [*SPEC.slices()[:1], None, *SPEC.slices()[1:]]
    dead = torch.zeros(SPEC.n_params, dtype=torch.bool)
    idx = torch.arange(SPEC.n_params)
    for unit in DEAD:
        dead |= (idx == w1.start + unit) | (idx == b1.start + unit) | (idx == w2.start + unit)
        start[:, b1.start + unit] = -100.0
    # the live parameters' scale is below the dtype's resolution: they never change
    tiny = 1e-30 if dtype == torch.float32 else 1e-300
    sigma = torch.where(dead, torch.tensor(0.01, dtype=torch.float64),
                        torch.tensor(tiny, dtype=torch.float64))
    losses = {b: MLPLoss(SPEC, task.inputs, task.targets, backend=b) for b in ("c", "torch")}
    return start, sigma, losses


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("beta", [math.inf, 50.0])
def test_kernel_accepts_exact_ties_like_the_rule(beta, dtype):
    start, sigma, losses = _tied_problem(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the live parameters' unresolvable sigma warns, on purpose
        rule = Neuroevolution(sigma, beta)
    # each path against its own loss (the kernel's and torch's differ in the last bits, LOSS_RTOL)
    state = rule.init(start, losses["c"], seed=7)
    ref = rule.init(start, losses["torch"], seed=7)
    proposal = state.params + rule.mutation(state)
    assert not torch.equal(proposal, state.params)  # every proposal moves the dead units' parameters
    for loss in losses.values():
        assert torch.equal(loss(proposal), loss(state.params))  # and ties exactly
    run = fused_step_fn(rule, state, losses["c"])
    assert run is not None
    fused, tally = run(state, STEPS)
    for _ in range(STEPS):
        ref = rule.step(ref, losses["torch"])
        assert bool(ref.accepted.all()) and bool(ref.tied.all())  # the rule: a tie is accepted
    assert torch.equal(tally.accepted, torch.full((R,), STEPS))  # the kernel: every tie accepted
    assert bool(fused.accepted.all()) and bool(fused.tied.all())
    assert torch.equal(fused.params, ref.params) and torch.equal(fused.loss, state.loss)
    assert not torch.equal(fused.params, state.params)
