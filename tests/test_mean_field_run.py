"""negd run / report / sweep with the mean-field twin (an ensemble of MeanFieldTwin runs, no gradient)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from negd.cli import main
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.problem import Problem
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.experiments.run.store import load_rows
from negd.experiments.sweep.grid import checked_grid, plan_sweep
from negd.twins.mean_field import MeanFieldTwin
from negd.validation import NegdError

TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.1}, "beta": "inf", "alpha": 1e-3, "lambda": 1,
        "realizations": 6, "t_final": 0.03, "n_snapshots": 4, "trajectories": 2, "seed": 5,
        "twin": "mean-field", "twin_proposals": 8, "twin_realizations": 3}


class _NoBackward(torch.autograd.Function):
    """Passes losses through; a gradient asked of them raises (a black-box loss)."""

    @staticmethod
    def forward(ctx, loss):  # noqa: D102
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        raise AssertionError("the mean-field twin asked the loss for a gradient")


class BlackBox:
    """The run's loss seen as a black box: values only; value_and_grad, autograd and the kernel's
    gradient are unavailable."""

    def __init__(self, loss_fn):
        self.loss_fn, self.n_params, self.calls = loss_fn, loss_fn.n_params, 0

    def __call__(self, params):
        self.calls += 1
        with torch.no_grad():
            loss = self.loss_fn(params.detach())
        return _NoBackward.apply(loss)

    def value_and_grad(self, params):
        raise AssertionError("the mean-field twin asked the loss for value_and_grad")


def _run(tmp_path, data=TINY, name="run", report=True):
    return run_experiment(config_from_dict(data), tmp_path / name, progress=False, report=report)


@pytest.mark.parametrize("beta", ["inf", 1000.0])
def test_run_with_the_mean_field_twin_end_to_end(tmp_path, beta):
    result = _run(tmp_path, dict(TINY, beta=beta))
    assert result.state == "complete" and result.report is not None, result.report_message
    config = json.loads((result.run_dir / "config.json").read_text())
    assert (config["twin"], config["twin_proposals"], config["twin_realizations"]) == ("mean-field", 8, 3)
    rows = load_rows(result.run_dir / "arms" / "0")
    n = config["n_params"]
    assert rows["gd_params"].shape == (4, n) and rows["gd_param_var"].shape == (4, n)
    np.testing.assert_array_equal(rows["gd_param_var"][0], 0)  # every twin run starts at x(0)
    assert np.all(rows["gd_param_var"][1:] > 0)  # the runs differ by their estimation noise
    assert np.all(np.isnan(rows["twin_grad_norm"]))  # no gradient was computed for the twin
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["twin"] == "mean-field" and summary["twin_realizations"] == 3
    assert summary["verdict"] in ("holds", "weakens", "fails", "unresolved")
    report = (result.run_dir / "report.md").read_text()
    assert "Twin: **mean-field twin ensemble** of 3 realizations" in report
    assert "MeanFieldTwin" in report and "mean-field twin lacks" in report
    figures = sorted(p.name for p in (result.run_dir / "figures").glob("*.png"))
    assert figures and all((result.run_dir / "figures" / f).stat().st_size > 0 for f in figures)
    # negd report rebuilds it from the run directory
    (result.run_dir / "report.md").unlink()
    assert main(["report", str(result.run_dir)]) == 0
    assert "mean-field twin ensemble" in (result.run_dir / "report.md").read_text()


def test_mean_field_twin_runs_on_a_loss_with_no_gradient(tmp_path, monkeypatch):
    """Nothing on the twin's path asks for a gradient: its loss is a black box whose backward raises."""
    boxes = []

    def black_box(self):
        boxes.append(BlackBox(self.loss_fn))
        return boxes[-1]

    monkeypatch.setattr(Problem, "twin_loss_fn", property(black_box))
    result = _run(tmp_path, report=False)
    assert result.state == "complete"
    assert sum(b.calls for b in boxes) > 0  # the twin did go through the black box
    rows = load_rows(result.run_dir / "arms" / "0")
    assert np.all(np.isfinite(rows["gd_loss"])) and rows["gd_loss"][-1] < rows["gd_loss"][0]


class NumpyBlackBox:
    """A loss with no gradient at all: the network evaluated outside autograd (as a simulator would be)."""

    def __init__(self, loss_fn):
        self.loss_fn, self.n_params = loss_fn, loss_fn.n_params

    def __call__(self, params):
        with torch.no_grad():
            values = self.loss_fn(params.detach()).cpu().numpy()
        return torch.from_numpy(values.astype(np.float64))


def test_a_whole_run_and_report_on_a_black_box_loss_never_differentiate(tmp_path, monkeypatch):
    """NE, the mean-field twin, the snapshots and the report on a loss with no gradient, with autograd's
    backward disabled: the regime (z, c) is NaN, everything else is measured."""
    build = Problem.build

    def black_box_problem(config):
        problem = build(config)
        problem.loss_fn = NumpyBlackBox(problem.loss_fn)
        return problem

    def no_backward(*args, **kwargs):
        raise AssertionError("a gradient was computed")

    monkeypatch.setattr(Problem, "build", staticmethod(black_box_problem))
    monkeypatch.setattr(torch.autograd, "grad", no_backward)
    monkeypatch.setattr(torch.Tensor, "backward", no_backward)
    result = _run(tmp_path, dict(TINY, beta=1000.0))
    assert result.state == "complete" and result.report is not None, result.report_message
    rows = load_rows(result.run_dir / "arms" / "0")
    assert np.all(np.isnan(rows["z"])) and np.all(np.isnan(rows["c"]))
    assert np.all(np.isfinite(rows["gd_loss"])) and rows["gd_loss"][-1] < rows["gd_loss"][0]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["verdict"] in ("holds", "weakens", "fails", "unresolved")
    assert "Regime not computed" in (result.run_dir / "report.md").read_text()


def test_same_seed_same_numbers_and_resume(tmp_path):
    a = load_rows(_run(tmp_path, name="a", report=False).run_dir / "arms" / "0")
    b = load_rows(_run(tmp_path, name="b", report=False).run_dir / "arms" / "0")
    np.testing.assert_array_equal(a["gd_params"], b["gd_params"])
    np.testing.assert_array_equal(a["gd_param_var"], b["gd_param_var"])
    other = load_rows(_run(tmp_path, dict(TINY, seed=6), name="c", report=False).run_dir / "arms" / "0")
    assert not np.array_equal(a["gd_params"][1:], other["gd_params"][1:])

    def stop(arm, row):
        if row == 2:
            raise KeyboardInterrupt

    stopped = run_experiment(config_from_dict(TINY), tmp_path / "d", progress=False, report=False,
                             on_snapshot=stop)
    assert stopped.state == "interrupted"
    resume_experiment(tmp_path / "d", progress=False, report=False)
    d = load_rows(tmp_path / "d" / "arms" / "0")
    np.testing.assert_array_equal(a["gd_params"], d["gd_params"])


def test_problem_builds_the_mean_field_twin_on_the_time_axis():
    config = config_from_dict(dict(TINY, **{"lambda": 0.5}, t_final=0.03))
    problem = Problem.build(config)
    rule = problem.gd_rule(config.arms()[0])
    assert isinstance(rule, MeanFieldTwin)
    assert (rule.proposals, rule.time_step, rule.sigma, rule.beta) == (8, 2.0, config.sigma, math.inf)
    assert problem.twin_loss_fn is problem.loss_fn and problem.twin_realizations == 3


def test_memory_estimate_counts_the_mean_field_twin():
    from negd.experiments.run.memory import estimate_memory

    def estimate(**changes):
        config = config_from_dict(dict(TINY, **changes))
        return estimate_memory(config, config.arms()).total

    small, large = estimate(twin_proposals=8), estimate(twin_proposals=10**6)
    config = config_from_dict(TINY)
    n, itemsize = config.network.spec().n_params, {"float32": 4, "float64": 8}[config.dtype]
    # R_L = 3 runs, each with M/2 float64 directions and displacements and a chunk of 256 proposals
    assert large - small == 3 * n * (2 * 8 * (500_000 - 4) + (256 - 4) * (2 * itemsize + 2 * 8))


def test_cli_reproduce_accepts_the_mean_field_twin(capsys):
    assert main(["reproduce", "shallow", "--twin", "brownian"]) != 0
    err = capsys.readouterr().err
    assert "invalid choice: 'brownian'" in err and "'mean-field'" in err
    assert len(err.strip().splitlines()) == 1


def test_sweep_points_take_the_mean_field_twin():
    base = {"lambda": 1, "alpha": 1e-3, "realizations": 4, "t_final": 0.02, "twin_proposals": 16,
            "twin_realizations": 2}
    grid = checked_grid(None, ["twin=noiseless,mean-field", "beta=inf,1000"])
    points = plan_sweep(base, grid)
    assert [p.name for p in points] == ["p000-twin=noiseless_beta=inf", "p001-twin=noiseless_beta=1000",
                                        "p002-twin=mean-field_beta=inf", "p003-twin=mean-field_beta=1000"]
    assert [(p.config.twin, p.config.twin_proposals, p.config.twin_realizations) for p in points] == [
        ("noiseless", None, None), ("noiseless", None, None), ("mean-field", 16, 2), ("mean-field", 16, 2)]
    # a file with twin: mean-field runs every point with it; M is a grid key too
    points = plan_sweep(base | {"twin": "mean-field"}, checked_grid(None, ["twin_proposals=8,32"]))
    assert [p.config.twin_proposals for p in points] == [8, 32]
    with pytest.raises(NegdError, match=r"^grid twin: values must be twin names \(noiseless, langevin, "
                                        r"matched, mean-field\), got 'brownian'$"):
        checked_grid(None, ["twin=brownian"])
    with pytest.raises(NegdError, match=r"^grid point p000-twin_proposals=7: twin_proposals: must be even"):
        plan_sweep(base | {"twin": "mean-field"}, checked_grid(None, ["twin_proposals=7"]))


def test_tiny_sweep_over_twins_writes_its_map(tmp_path):
    (tmp_path / "tiny.yaml").write_text(
        "network: {depth: 1, width: 4, output_bias: false}\ninit: {kind: paper, sigma0: 0.1}\n"
        "alpha: 1e-3\nlambda: 1\nrealizations: 4\nt_final: 0.02\nn_snapshots: 3\ntrajectories: 1\n"
        "twin_proposals: 8\ntwin_realizations: 2\n")
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "tiny.yaml"), "--grid", "twin=noiseless,mean-field",
                 "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "sweep.json").read_text())
    assert [p["values"] for p in data["points"]] == [{"twin": "noiseless"}, {"twin": "mean-field"}]
    for point in data["points"]:
        assert point["state"] == "complete"
        assert point["verdict"] in ("holds", "weakens", "fails", "unresolved")
        assert math.isfinite(point["s_final"])  # neither twin carries NE's noise: s is computed
    assert "| mean-field |" in (out / "sweep.md").read_text()
