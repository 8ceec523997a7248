"""negd run / report / resume / shards / sweep on losses with no gradient: a control task
(task: CartPole-v1, negd.envs.ControlLoss on fixed episodes) and a black-box objective named in the
configuration (objective: "objectives_fixture:kinked", tests/objectives_fixture.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from negd.cli import main
from negd.envs.loss import ControlLoss
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.problem import Problem
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.experiments.run.store import load_rows
from negd.experiments.sweep.grid import checked_grid, plan_sweep
from negd.validation import NegdError

VERDICTS = ("holds", "weakens", "fails", "unresolved")
# sigma = sqrt(2 pi) * lambda * alpha = 0.5: large enough that a greedy CartPole policy of width 4
# changes its actions (at small sigma every proposal is an exact tie and the twin does not move)
CARTPOLE = {"task": "CartPole-v1", "episodes": 2, "network": {"depth": 1, "width": 4},
            "init": {"kind": "paper", "sigma0": 0.5}, "alpha": 0.1, "lambda": 2, "realizations": 8,
            "t_final": 2.0, "n_snapshots": 4, "trajectories": 2, "twin_proposals": 8, "twin_realizations": 2,
            "dtype": "float64", "seed": 0}
OBJECTIVE = {"objective": "objectives_fixture:kinked", "alpha": 0.01, "lambda": 1, "realizations": 6,
             "t_final": 0.1, "n_snapshots": 3, "trajectories": 2, "twin_proposals": 8,
             "twin_realizations": 2, "dtype": "float64"}


@pytest.fixture(autouse=True)
def _objectives_importable(monkeypatch):
    """tests/ on sys.path, as a user's objective module is on theirs (installed or on PYTHONPATH)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))


def _run(tmp_path, data, name="run", report=False, **kwargs):
    return run_experiment(config_from_dict(data), tmp_path / name, progress=False, report=report, **kwargs)


def _rows(result):
    return load_rows(result.run_dir / "arms" / "0")


def _assert_same_rows(a, b):
    assert sorted(a) == sorted(b)
    for key in a:
        if key != "wall_seconds":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --------------------------------------------------------------------------- configuration
def test_control_task_config_defaults_and_refusals():
    config = config_from_dict({"task": "CartPole-v1"})
    assert (config.twin, config.episodes, config.control) == ("mean-field", 10, True)
    spec = config.spec()
    assert (spec.in_features, spec.out_features) == (4, 2)
    pendulum = config_from_dict({"task": "Pendulum-v1", "episodes": 3, "network": {"width": 4}})
    assert (pendulum.spec().in_features, pendulum.spec().out_features, pendulum.episodes) == (3, 1, 3)
    assert pendulum.to_user_dict()["episodes"] == 3
    for twin in ("noiseless", "langevin", "matched"):
        with pytest.raises(NegdError, match=rf"^twin: task CartPole-v1 has no gradient; allowed twin: "
                                            rf"mean-field, got '{twin}'$"):
            config_from_dict({"task": "CartPole-v1", "twin": twin, "beta": 100.0,
                              "gd_rule": "gradient_descent"})
    with pytest.raises(NegdError, match=r"^episodes: only used with a control task \(CartPole-v1, "
                                        r"Pendulum-v1\), got 3 with task = sin2pi$"):
        config_from_dict({"task": "sin2pi", "episodes": 3})
    with pytest.raises(NegdError, match=r"^episodes: must be an integer >= 1"):
        config_from_dict({"task": "CartPole-v1", "episodes": 0})
    with pytest.raises(NegdError, match=r"^task: must be one of .*CartPole-v1, Pendulum-v1, got "
                                        r"'Acrobot-v1'$"):
        config_from_dict({"task": "Acrobot-v1"})
    # a regression task keeps its defaults and its settings (no episodes, no objective)
    regression = config_from_dict({"task": "sin2pi"})
    assert regression.twin == "noiseless" and "episodes" not in regression.to_user_dict()


def test_problem_builds_the_control_loss_on_fixed_episodes():
    config = config_from_dict(CARTPOLE)
    problem = Problem.build(config)
    assert isinstance(problem.loss_fn, ControlLoss)
    assert (problem.loss_fn.episodes, problem.loss_fn.seed) == (2, 0)
    assert problem.x0.shape == (config.n_params,) and problem.x0.dtype == torch.float64
    x = problem.x0.expand(3, -1).clone()
    first = problem.loss_fn(x)
    assert first.dtype == torch.float64 and torch.equal(first, problem.loss_fn(x))  # deterministic
    assert first.requires_grad is False and torch.all(first < 0)  # minus the mean return


def test_objective_config_and_its_one_line_errors(tmp_path):
    config = config_from_dict(OBJECTIVE)
    assert (config.objective, config.task, config.twin, config.n_params) == ("objectives_fixture:kinked",
                                                                              None, "mean-field", None)
    assert config.with_overrides(seed=3).objective == config.objective  # the settings round-trip
    assert "task" not in config.to_user_dict() and "network" not in config.to_user_dict()
    refusals = {
        "objectives_fixture": r"must be \"package.module:factory\"",
        "objectives_fixture:": r"must be \"package.module:factory\"",
    }
    for value, message in refusals.items():
        with pytest.raises(NegdError, match=rf"^objective: {message}"):
            config_from_dict(dict(OBJECTIVE, objective=value))
    with pytest.raises(NegdError, match=r"^objective: give either task or objective, not both$"):
        config_from_dict(dict(OBJECTIVE, task="sin2pi"))
    with pytest.raises(NegdError, match=r"^network: not used with an objective"):
        config_from_dict(dict(OBJECTIVE, network={"width": 4}))
    with pytest.raises(NegdError, match=r"^episodes: not used with an objective"):
        config_from_dict(dict(OBJECTIVE, episodes=2))
    with pytest.raises(NegdError, match=r"^init.kind: an objective needs init.kind = paper"):
        config_from_dict(dict(OBJECTIVE, init={"kind": "torch"}))


@pytest.mark.parametrize(("name", "message"), [
    ("no_such_module_negd:kinked", r"cannot be imported: ModuleNotFoundError: No module named "
                                   r"'no_such_module_negd'"),
    ("objectives_fixture:missing", r"names no attribute 'missing' of module objectives_fixture"),
    ("objectives_fixture:not_callable", r"is not callable \(a int\)"),
    ("objectives_fixture:no_n_params", r"returned a loss without an integer n_params >= 1"),
    ("objectives_fixture:wrong_shape", r"returned a bad loss: loss_fn: must map params \[R, N\] to losses "
                                       r"\[R\] = \[2\], got \[1\]"),
    ("objectives_fixture:returns_nan", r"returned a non-finite loss at x\(0\)"),
])
def test_a_bad_objective_is_one_line_naming_the_field(tmp_path, name, message):
    config = config_from_dict(dict(OBJECTIVE, objective=name))
    with pytest.raises(NegdError, match=rf"^objective: '{name}' {message}") as err:
        run_experiment(config, tmp_path / "run", progress=False, report=False)
    assert len(str(err.value).splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_a_gradient_twin_needs_an_objective_with_a_gradient(tmp_path):
    smooth = {k: v for k, v in OBJECTIVE.items() if not k.startswith("twin_")}
    smooth |= {"objective": "objectives_fixture:smooth", "twin": "noiseless"}
    problem = Problem.build(config_from_dict(smooth))  # it has a gradient: the noiseless twin is allowed
    assert problem.x0.shape == (5,)
    with pytest.raises(NegdError, match=r"^twin: objective objectives_fixture:kinked has no gradient \(its "
                                        r"losses carry no autograd graph\); allowed twin: mean-field, got "
                                        r"'noiseless'$"):
        Problem.build(config_from_dict(dict(smooth, objective="objectives_fixture:kinked")))
    # the smooth objective runs beside the noiseless twin (a gradient was found by trying)
    result = _run(tmp_path, smooth)
    assert result.state == "complete"
    rows = _rows(result)
    assert np.all(np.isfinite(rows["gd_loss"])) and rows["gd_loss"][-1] < rows["gd_loss"][0]


# --------------------------------------------------------------------------- whole runs
def test_control_task_run_and_report_end_to_end(tmp_path):
    result = _run(tmp_path, CARTPOLE, report=True)
    assert result.state == "complete" and result.report is not None, result.report_message
    config = json.loads((result.run_dir / "config.json").read_text())
    assert (config["task"], config["episodes"], config["twin"]) == ("CartPole-v1", 2, "mean-field")
    assert config["n_params"] == 4 * 4 + 4 + 4 * 2 + 2
    rows = _rows(result)
    assert np.all(np.isnan(rows["z"])) and np.all(np.isnan(rows["twin_grad_norm"]))  # no gradient anywhere
    assert rows["ne_loss_mean"][-1] < rows["ne_loss_mean"][0]  # NE learns: the mean return grows
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["verdict"] in VERDICTS
    assert summary["resolution_tie_fraction"] > 0  # a greedy policy: exact ties, reported
    assert summary["resolution_ok"] is True  # float64: ties are the loss's own, not rounding
    report = (result.run_dir / "report.md").read_text()
    assert "mean-field twin ensemble" in report and "the torch path ran" not in report
    assert "| task | `\"CartPole-v1\"` |" in report and "| episodes | `2` |" in report
    figures = sorted(p.name for p in (result.run_dir / "figures").glob("*.png"))
    assert {"loss.png", "delta.png"} <= set(figures)
    assert all((result.run_dir / "figures" / f).stat().st_size > 0 for f in figures)
    (result.run_dir / "report.md").unlink()
    assert main(["report", str(result.run_dir)]) == 0
    assert (result.run_dir / "report.md").exists()


def test_objective_run_and_report_end_to_end(tmp_path, monkeypatch):
    def no_backward(*args, **kwargs):
        raise AssertionError("a gradient was computed")

    monkeypatch.setattr(torch.Tensor, "backward", no_backward)
    result = _run(tmp_path, OBJECTIVE, report=True)
    assert result.state == "complete" and result.report is not None, result.report_message
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["objective"] == "objectives_fixture:kinked" and config["n_params"] == 5
    rows = _rows(result)
    np.testing.assert_array_equal(rows["gd_params"][0], np.linspace(-0.5, 0.5, 5))  # initial_params()
    assert rows["gd_loss"][-1] < rows["gd_loss"][0] and rows["ne_loss_mean"][-1] < rows["ne_loss_mean"][0]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["verdict"] in VERDICTS
    assert "| objective | `\"objectives_fixture:kinked\"` |" in (result.run_dir / "report.md").read_text()


@pytest.mark.parametrize("data", [CARTPOLE, OBJECTIVE], ids=["cartpole", "objective"])
def test_resume_and_shards_give_the_uninterrupted_numbers(tmp_path, data):
    whole = _rows(_run(tmp_path, data, name="whole"))

    def stop(arm, row):
        if row == 1:
            raise KeyboardInterrupt

    stopped = _run(tmp_path, data, name="stopped", on_snapshot=stop)
    assert stopped.state == "interrupted"
    assert resume_experiment(tmp_path / "stopped", progress=False, report=False).state == "complete"
    _assert_same_rows(whole, load_rows(tmp_path / "stopped" / "arms" / "0"))
    _assert_same_rows(whole, _rows(_run(tmp_path, data, name="sharded", shards=2)))
    other = _rows(_run(tmp_path, dict(data, seed=1), name="other"))
    assert not np.array_equal(whole["param_mean"][1:], other["param_mean"][1:])


def test_sweep_over_two_points_of_a_control_task(tmp_path):
    base = dict(CARTPOLE, realizations=4, t_final=1.0, n_snapshots=3)
    points = plan_sweep(base, checked_grid(None, ["lambda=1,2"]))
    assert [(p.config.task, p.config.lam, p.config.episodes) for p in points] == [
        ("CartPole-v1", 1.0, 2), ("CartPole-v1", 2.0, 2)]
    assert [p.config.episodes for p in plan_sweep(base, checked_grid(None, ["episodes=2,3"]))] == [2, 3]
    with pytest.raises(NegdError, match=r"^grid point p000-twin=noiseless: twin: task CartPole-v1 has no "
                                        r"gradient"):
        plan_sweep(base, checked_grid(None, ["twin=noiseless,mean-field"]))
    (tmp_path / "cartpole.yaml").write_text(json.dumps(base))  # JSON is YAML
    out = tmp_path / "out"
    assert main(["sweep", str(tmp_path / "cartpole.yaml"), "--grid", "lambda=1,2", "--out", str(out),
                 "--no-progress"]) == 0
    data = json.loads((out / "sweep.json").read_text())
    assert [p["values"] for p in data["points"]] == [{"lambda": 1}, {"lambda": 2}]
    for point in data["points"]:
        assert point["state"] == "complete" and point["verdict"] in (*VERDICTS, "undetermined")
        assert math.isfinite(point["loss_gap_relative"]) and math.isnan(point["z_final"])  # no gradient
    assert "| p001 | 2 |" in (out / "sweep.md").read_text()


def test_a_plateau_is_no_rounding_risk():
    """Every probe an exact tie (a flat piece of a greedy policy's return): the spread is unmeasured
    (NaN), not a 50% decision risk; a loss with any slope keeps its measured spread."""
    from negd.diagnostics.resolution import loss_rounding

    params = torch.zeros(2, 3, dtype=torch.float64)
    error, spread = loss_rounding(lambda p: torch.zeros(p.shape[0], dtype=torch.float64), params, 0.1)
    assert torch.all(torch.isnan(spread)) and torch.all(error == 0)
    _, spread = loss_rounding(lambda p: p.sum(dim=1).double(), params, 0.1)
    assert torch.all(spread > 0.05)  # sigma sqrt(N) = 0.17 rms, over 8 probes
