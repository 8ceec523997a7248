"""negd.compare: the correspondence of a rule and its twin on any loss (negd.analysis.correspondence)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import negd
from negd.analysis.correspondence import Comparison
from negd.losses.models import MLPSpec, paper_init
from negd.twins.mean_field import MeanFieldTwin
from negd.validation import NegdError

LABELS = ("holds", "weakens", "fails", "unresolved")


@pytest.fixture(scope="module")
def shallow():
    """The paper's shallow net (1-30-1 tanh, no output bias, sin 2 pi t, paper init), float64."""
    task = negd.get_task("sin2pi")
    spec = MLPSpec(depth=1, width=30, output_bias=False)
    loss = negd.MLPLoss(spec, task.inputs.double(), task.targets.double())
    return loss, paper_init(spec.n_params, 1e-2, seed=0).double()


def _z(a: Comparison, b: Comparison) -> np.ndarray:
    """(Delta_c of a - Delta_c of b) in combined SE, snapshots after t = 0."""
    se = np.hypot(a.delta_corrected_se, b.delta_corrected_se)
    return (a.delta_corrected - b.delta_corrected)[1:] / se[1:]


def test_mean_field_and_matched_twins_give_the_same_delta_on_the_shallow_net(shallow):
    loss, x0 = shallow
    rule = negd.Neuroevolution(sigma=1e-4)  # the linear regime (c << 0.1) of the quick shallow preset
    kw = dict(steps=100, realizations=64, seed=1, snapshots=3)
    mean_field = negd.compare(loss, x0, rule, "mean-field", twin_proposals=32, **kw)
    matched = negd.compare(loss, x0, rule, "matched", twin_realizations=16, **kw)
    assert (mean_field.twin, mean_field.twin_realizations, matched.twin_realizations) == ("mean-field", 8, 16)
    assert np.all(np.abs(_z(mean_field, matched)) < 4), _z(mean_field, matched)
    # and each is consistent with NE itself (Delta_c ~ 0 within 4 SE), the verdict decided
    for c in (mean_field, matched):
        assert np.all(np.abs(c.delta_corrected[1:]) < 4 * c.delta_corrected_se[1:])
        assert c.label in LABELS and c.t.tolist() == [0.0, 50.0, 100.0]
    # the same criterion rejects a twin whose drift is wrong (twice NE's expected step)
    fast = negd.compare(loss, x0, rule, MeanFieldTwin(1e-4, proposals=32, time_step=2.0), twin_realizations=8,
                        **kw)
    assert _z(fast, matched)[-1] > 4 and fast.label in ("weakens", "fails")


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, params):  # noqa: D102
        return params.to(torch.float64).abs().sum(dim=1)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        raise AssertionError("a gradient was asked of the black-box loss")


def _kinked(params: torch.Tensor) -> torch.Tensor:
    """U(x) = sum_i |x_i| as a black box: no gradient, never called with autograd on."""
    assert not torch.is_grad_enabled()
    return _NoBackward.apply(params)


@pytest.mark.parametrize("beta", [math.inf, 20.0])
def test_black_box_kinked_loss_runs_with_no_gradient(beta):
    rule = negd.Neuroevolution(sigma=0.05, beta=beta)
    # From x = 1 no coordinate reaches the kink in 40 steps: U is linear there, so NE's mean and the
    # mean-field twin have the same drift and Delta_c must be 0 within 4 SE.
    c = negd.compare(_kinked, torch.ones(10, dtype=torch.float64), rule, steps=40, realizations=64,
                     snapshots=5, seed=2)
    assert c.label in LABELS and c.ne_loss_mean[-1] < c.ne_loss_mean[0]
    assert np.all(np.abs(c.delta_corrected[1:]) < 4 * c.delta_corrected_se[1:])
    assert np.all(np.abs(c.loss_gap[1:]) < 4 * c.loss_gap_se[1:])
    again = negd.compare(_kinked, torch.ones(10, dtype=torch.float64), rule, steps=40, realizations=64,
                         snapshots=5, seed=2)
    np.testing.assert_array_equal(c.delta, again.delta)  # same seed, same numbers
    record = c.to_dict()
    assert record["verdict"] == c.label and record["settings"]["seed"] == 2
    assert "negd" in record["settings"]["versions"]
    # through the kink (x = 0.3) as well, with no gradient
    through = negd.compare(_kinked, torch.full((10,), 0.3, dtype=torch.float64), rule, steps=80,
                           realizations=16, snapshots=3, seed=2)
    assert through.label in LABELS and np.all(np.isfinite(through.delta_corrected))


def test_a_twin_that_needs_a_gradient_asks_the_black_box_for_one():
    """The control: the black box does catch a gradient request (so the tests above can fail)."""
    with pytest.raises(AssertionError):
        negd.compare(_kinked, torch.ones(4, dtype=torch.float64), negd.Neuroevolution(sigma=0.05),
                     "noiseless", steps=2, realizations=4)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(twin="brownian"), r"^twin: must be one of mean-field, matched, noiseless, langevin or an update "
                            r"rule, got 'brownian'$"),
    (dict(twin=42), r"^twin: must be one of .* or an update rule \(init/step\), got int$"),
    (dict(twin_proposals=0), r"^twin_proposals: must be an integer >= 2, got 0$"),
    (dict(twin_proposals=7), r"^twin_proposals: must be even \(antithetic pairs \+-xi\), got 7$"),
    (dict(realizations=1), r"^realizations: must be an integer >= 2, got 1$"),
    (dict(steps=0), r"^steps: must be an integer >= 1, got 0$"),
    (dict(twin_realizations=1), r"^twin_realizations: must be an integer >= 2, got 1$"),
    (dict(twin="noiseless", twin_realizations=3),
     r"^twin_realizations: the noiseless twin is one run, got 3$"),
    (dict(snapshots=1), r"^snapshots: must be an integer >= 2, got 1$"),
    (dict(snapshots=[5, 99]), r"^snapshots: NE steps must be integers in \[0, steps = 10\], got 99$"),
    (dict(seed=-1), r"^seed: must be an integer in \[0, 2\^63\), got -1$"),
    (dict(params=torch.ones(2, 3, dtype=torch.float64)),
     r"^params: must be one vector x\(0\) of shape \[N\]"),
    (dict(rule=negd.Population(sigma=0.1, k=4)), r"^twin: 'mean-field' is the twin of negd.Neuroevolution, "
                                                 r"not of Population; pass the twin as a rule instead$"),
    (dict(rule="ne"), r"^rule: must be an update rule \(init/step\), got str$"),
])
def test_bad_inputs_get_one_line(kwargs, message):
    args = dict(loss_fn=_kinked, params=torch.ones(3, dtype=torch.float64),
                rule=negd.Neuroevolution(sigma=0.1), steps=10, realizations=4) | kwargs
    with pytest.raises(NegdError, match=message) as info:
        negd.compare(**args)
    assert "\n" not in str(info.value)


def test_snapshot_list_and_summary():
    c = negd.compare(_kinked, torch.ones(3, dtype=torch.float64), negd.Neuroevolution(sigma=0.1), steps=6,
                     realizations=4, snapshots=[6, 2], twin_realizations=2, twin_proposals=4)
    assert c.t.tolist() == [0.0, 2.0, 6.0] and c.ne_state.step == 6 and c.twin_state.step == 6
    assert c.summary().startswith("mean-field twin after 6 NE steps (4 realizations)")


def test_compare_on_a_control_task():
    """A control objective (minus Pendulum-v1's mean return, batched torch environment): no gradient."""
    from negd.envs.loss import ControlLoss

    spec = MLPSpec(depth=1, width=8, in_features=3, out_features=1)
    loss = ControlLoss("Pendulum-v1", spec, episodes=2, seed=0)
    c = negd.compare(loss, paper_init(spec.n_params, 0.3, seed=0).double(), negd.Neuroevolution(sigma=0.05),
                     steps=10, realizations=8, snapshots=3, twin_realizations=2, twin_proposals=8)
    assert c.label in LABELS and np.all(np.isfinite(c.delta_corrected)) and np.all(np.isfinite(c.twin_loss))
    assert c.twin_state.params.shape == (2, spec.n_params)
