"""The experiment runner: run-directory format (contract), atomic writes, exact resume."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.validation import NegdError

TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.1}, "beta": "inf", "alpha": 1e-3, "lambda": 1,
        "realizations": 6, "t_final": 0.03, "n_snapshots": 4, "trajectories": 2, "seed": 5,
        "scan": {"factors": [2], "realizations": 3}}

CONTRACT_SCALARS = ("t", "ne_loss_mean", "ne_loss_se", "loss_of_mean", "gd_loss", "acceptance",
                    "acceptance_se", "grad_norm", "trace_hessian", "z", "c", "acceptance_predicted",
                    "drift_factor", "wall_seconds")


def _arrays(run_dir, arm):
    with np.load(run_dir / "arms" / str(arm) / "snapshots.npz") as z:
        return {k: z[k] for k in z.files}


def _run(tmp_path, name="run", data=TINY, **kw):
    return run_experiment(config_from_dict(data), tmp_path / name, progress=False, report=False, **kw)


def test_contract_format(tmp_path):
    result = _run(tmp_path)
    assert result.state == "complete"
    run_dir = result.run_dir
    config = json.loads((run_dir / "config.json").read_text())
    for key in ("experiment", "scale", "network", "n_params", "task", "init", "beta", "alpha", "lambda",
                "gd_rule", "realizations", "t_final", "n_snapshots", "trajectories", "seed", "device",
                "arms", "versions", "kernel", "created"):
        assert key in config, key
    assert config["beta"] == "inf" and config["n_params"] == 12 and config["experiment"] == "custom"
    assert set(config["versions"]) >= {"negd", "torch", "numpy", "python", "platform", "cpu"}
    assert [a["label"] for a in config["arms"]] == ["sigma", "sigma/2"]
    for arm in config["arms"]:
        assert set(arm) >= {"label", "sigma", "lambda", "ne_steps", "gd_steps", "t_final"}
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "complete" and status["arms_complete"] == [0, 1] and status["wall_seconds"] > 0

    n, k = 12, 2
    for i, arm in enumerate(config["arms"]):
        z = _arrays(run_dir, i)
        s = config["n_snapshots"]
        for key in CONTRACT_SCALARS:
            assert z[key].shape == (s,) and z[key].dtype == np.float64, key
        for key in ("ne_step", "gd_step"):
            assert z[key].shape == (s,) and z[key].dtype == np.int64
        for key in ("param_mean", "param_var", "gd_params"):
            assert z[key].shape == (s, n) and z[key].dtype == np.float64
        assert z["trajectories"].shape == (s, k, n) and z["trajectories"].dtype == np.float32
        assert z["trajectory_ids"].tolist() == [0, 1]
        # Common time axis: t = alpha * GD steps = alpha * lambda * NE steps; row 0 is t = 0.
        np.testing.assert_allclose(z["t"], 1e-3 * z["gd_step"])
        np.testing.assert_allclose(z["gd_step"], arm["lambda"] * z["ne_step"])
        assert z["t"][0] == 0 and z["t"][-1] == pytest.approx(arm["t_final"])
        acceptance = z["acceptance"][1:]
        assert math.isnan(z["acceptance"][0]) and np.all((acceptance >= 0) & (acceptance <= 1))
        # Row 0: every realization is the shared initial vector, the twin starts there too.
        np.testing.assert_array_equal(z["param_mean"][0], z["gd_params"][0])
        np.testing.assert_array_equal(z["param_var"][0], 0)
        # Same parameters; the losses may differ in the last float32 bit (the twin is evaluated on
        # one thread or by autograd, the ensemble by the kernel).
        assert z["gd_loss"][0] == pytest.approx(z["ne_loss_mean"][0], rel=1e-6)
        assert z["loss_of_mean"][0] == pytest.approx(z["ne_loss_mean"][0], rel=1e-6)
        np.testing.assert_array_equal(z["trajectories"][0], np.broadcast_to(z["gd_params"][0], (k, n)))
        assert np.all(np.diff(z["wall_seconds"]) >= 0)
        # Normalized GD moves by alpha per GD step (no gradient is zero here).
        steps = np.linalg.norm(np.diff(z["gd_params"], axis=0), axis=1)
        assert np.all(steps <= 1e-3 * np.diff(z["gd_step"]) * (1 + 1e-4))


def test_loadable_with_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    z = _arrays(_run(tmp_path).run_dir, 0)
    frame = pd.DataFrame({k: z[k] for k in CONTRACT_SCALARS})
    assert len(frame) == 4


def test_ensemble_statistics_match_trajectories(tmp_path):
    data = dict(TINY, trajectories=6, scan=None)
    z = _arrays(_run(tmp_path, data=data).run_dir, 0)
    # With K = R the stored trajectories are the whole ensemble: mean and variance follow.
    traj = z["trajectories"].astype(np.float64)
    np.testing.assert_allclose(z["param_mean"], traj.mean(axis=1), rtol=1e-12, atol=0)
    np.testing.assert_allclose(z["param_var"], traj.var(axis=1, ddof=1), rtol=1e-9, atol=1e-30)


def test_stored_delta_se_uses_every_realization(tmp_path):
    """The runner's covariance SE of Delta_c equals negd.analysis.delta_from_samples on the whole
    ensemble (stored here as trajectories, K = R); old run directories without it fall back."""
    from negd.analysis import delta_from_samples, load_run
    from negd.analysis.metrics import arm_final, arm_series

    data = dict(TINY, trajectories=6, scan=None)
    run_dir = _run(tmp_path, data=data).run_dir
    z = _arrays(run_dir, 0)
    expected = delta_from_samples(z["gd_params"], z["trajectories"].astype(np.float64))
    np.testing.assert_allclose(z["delta_corrected_se_covariance"], expected.corrected_se, rtol=1e-9)
    arm = load_run(run_dir).arms[0]
    assert arm_final(arm, arm_series(arm))["delta_se_method"] == "covariance"
    # A snapshots.npz written before the column existed: NaN on load, per-parameter SE in the report.
    np.savez(run_dir / "arms" / "0" / "snapshots.npz",
             **{k: v for k, v in z.items() if k != "delta_corrected_se_covariance"})
    arm = load_run(run_dir).arms[0]
    series = arm_series(arm)
    np.testing.assert_array_equal(series["delta_corrected_se"], series["delta_corrected_se_per_parameter"])
    assert arm_final(arm, series)["delta_se_method"] == "per-parameter"


def test_same_seed_same_numbers_and_seed_matters(tmp_path):
    a = _arrays(_run(tmp_path, "a").run_dir, 0)
    b = _arrays(_run(tmp_path, "b").run_dir, 0)
    c = _arrays(_run(tmp_path, "c", data=dict(TINY, seed=6)).run_dir, 0)
    for key in ("param_mean", "param_var", "gd_params", "trajectories", "ne_loss_mean", "acceptance"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["trajectories"], c["trajectories"])


class _StopAfter:
    """A snapshot hook that raises KeyboardInterrupt (as Ctrl-C would) after ``k`` snapshots."""

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, 0

    def __call__(self, arm: int, row: int) -> None:
        self.seen += 1
        if self.seen == self.k:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stop_after", [2, 6])  # inside arm 0; inside arm 1 (arm 0 has 4 rows)
def test_resume_equals_uninterrupted(tmp_path, stop_after):
    full = _run(tmp_path, "full").run_dir
    part = _run(tmp_path, "part", on_snapshot=_StopAfter(stop_after))
    assert part.state == "interrupted"
    status = json.loads((part.run_dir / "status.json").read_text())
    assert status["state"] == "interrupted"
    assert status["arms_complete"] == ([] if stop_after == 2 else [0])
    kept = _arrays(part.run_dir, 0)
    assert kept["t"].shape[0] == min(stop_after, 4)  # every completed snapshot is on disk
    resumed = resume_experiment(part.run_dir, progress=False, report=False)
    assert resumed.state == "complete"
    for arm in (0, 1):
        a, b = _arrays(full, arm), _arrays(part.run_dir, arm)
        assert set(a) == set(b)
        for key in a:
            if key != "wall_seconds":
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    ckpt_a = torch.load(full / "arms" / "1" / "checkpoint.pt", weights_only=True)
    ckpt_b = torch.load(part.run_dir / "arms" / "1" / "checkpoint.pt", weights_only=True)
    assert torch.equal(ckpt_a["ne"]["params"], ckpt_b["ne"]["params"])
    assert json.loads((part.run_dir / "status.json").read_text())["state"] == "complete"


def test_resume_drops_rows_beyond_the_checkpoint(tmp_path):
    """A crash between writing snapshots.npz and checkpoint.pt leaves one extra row: it is recomputed."""
    full = _run(tmp_path, "full").run_dir
    part = _run(tmp_path, "part", on_snapshot=_StopAfter(3)).run_dir
    ckpt_path = part / "arms" / "0" / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    # Replace the checkpoint by the one of the previous snapshot, as if the last one never landed.
    stop = _run(tmp_path, "prev", on_snapshot=_StopAfter(2)).run_dir
    torch.save(torch.load(stop / "arms" / "0" / "checkpoint.pt", weights_only=True), ckpt_path)
    assert ckpt["rows"] == 3
    resume_experiment(part, progress=False, report=False)
    np.testing.assert_array_equal(_arrays(full, 0)["param_mean"], _arrays(part, 0)["param_mean"])


def test_refuses_non_empty_out_and_bad_resume(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("keep me")
    with pytest.raises(NegdError, match="^--out: .*not empty"):
        _run(tmp_path, "busy")
    assert (tmp_path / "busy" / "x.txt").read_text() == "keep me"
    with pytest.raises(NegdError, match="^--resume: "):
        resume_experiment(tmp_path / "missing", progress=False, report=False)
    with pytest.raises(NegdError, match="config.json"):
        resume_experiment(tmp_path / "busy", progress=False, report=False)


def test_resume_of_complete_run_changes_nothing(tmp_path):
    run_dir = _run(tmp_path).run_dir
    before = _arrays(run_dir, 0)
    assert resume_experiment(run_dir, progress=False, report=False).state == "complete"
    after = _arrays(run_dir, 0)
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_finite_beta_and_torch_init(tmp_path):
    data = dict(TINY, beta=1000.0, init={"kind": "torch"}, network={"depth": 2, "width": 3}, scan=None)
    result = _run(tmp_path, data=data)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["gd_rule"] == "gradient_descent" and config["init"]["kind"] == "torch"
    z = _arrays(result.run_dir, 0)
    assert z["param_mean"].shape == (4, config["n_params"])
    # Finite beta accepts some uphill moves: acceptance is a rate strictly inside (0, 1].
    assert np.all(z["acceptance"][1:] > 0)


# A miniature finite-beta experiment with a Langevin twin (the 1-width-1 network uses TwinLoss's
# hand-written gradient); lambda = 1/4 so that the twin's noise per GD step, sigma/sqrt(lambda) =
# 2 sigma, differs from sigma.
LANGEVIN = dict(TINY, beta=1000.0, network={"depth": 1, "width": 4, "output_bias": True}, twin="langevin",
                twin_realizations=5, **{"lambda": 0.25}, t_final=0.004, n_snapshots=3,
                scan={"factors": [2], "realizations": 3})
TWIN_ARRAYS = ("gd_loss_se", "gd_loss_of_mean", "twin_grad_norm")


@pytest.mark.parametrize("twin", ["langevin", "matched"])  # the two ensemble twins
def test_langevin_twin_contract(tmp_path, twin):
    result = _run(tmp_path, data=dict(LANGEVIN, twin=twin))
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["twin"] == twin and config["twin_realizations"] == 5
    assert config["gd_rule"] == "gradient_descent"
    n, s = config["n_params"], config["n_snapshots"]
    for i in range(len(config["arms"])):
        z = _arrays(result.run_dir, i)
        for key in ("gd_params", "gd_param_var", "param_mean", "param_var"):
            assert z[key].shape == (s, n) and z[key].dtype == np.float64, key
        for key in CONTRACT_SCALARS + TWIN_ARRAYS:
            assert z[key].shape == (s,) and z[key].dtype == np.float64, key
        # Row 0: every twin realization is x(0): no variance, exact loss.
        np.testing.assert_array_equal(z["gd_params"][0], z["param_mean"][0])
        np.testing.assert_array_equal(z["gd_param_var"][0], 0)
        assert z["gd_loss_se"][0] == 0 and z["gd_loss_of_mean"][0] == pytest.approx(z["gd_loss"][0], rel=1e-6)
        assert np.all(z["gd_loss_se"][1:] > 0) and np.all(z["gd_param_var"][1:] > 0)


def test_langevin_twin_noise_per_gd_step(tmp_path):
    """Over k GD steps the drift moves the twin by ~alpha k |g| << its noise, so Var ~= k s_gd^2,
    s_gd = sigma/sqrt(lambda) (here 2 sigma). The mean over N = 13 parameters of q^2/(k s_gd^2),
    q^2 with R_L - 1 = 39 degrees of freedom, has relative SE sqrt(2/39/13) = 0.063: 4 SE = 0.25
    (noise sigma per GD step, i.e. forgetting 1/sqrt(lambda), would give a ratio of 0.25)."""
    data = dict(LANGEVIN, twin_realizations=40, scan=None, n_snapshots=2)
    run_dir = _run(tmp_path, data=data).run_dir
    config = json.loads((run_dir / "config.json").read_text())
    z = _arrays(run_dir, 0)
    arm = config["arms"][0]
    s_gd = arm["sigma"] / math.sqrt(arm["lambda"])
    ratio = z["gd_param_var"][-1] / (z["gd_step"][-1] * s_gd**2)
    assert abs(ratio.mean() - 1) < 0.25


@pytest.mark.parametrize("twin", ["langevin", "matched"])
def test_langevin_twin_same_seed_same_numbers(tmp_path, twin):
    a = _arrays(_run(tmp_path, "a", data=dict(LANGEVIN, twin=twin)).run_dir, 0)
    b = _arrays(_run(tmp_path, "b", data=dict(LANGEVIN, twin=twin)).run_dir, 0)
    for key in a:
        if key != "wall_seconds":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("twin", ["langevin", "matched"])
@pytest.mark.parametrize("stop_after", [2, 4])  # inside arm 0; inside arm 1 (arm 0 has 3 rows)
def test_resume_equals_uninterrupted_langevin(tmp_path, stop_after, twin):
    data = dict(LANGEVIN, twin=twin)
    full = _run(tmp_path, "full", data=data).run_dir
    part = _run(tmp_path, "part", data=data, on_snapshot=_StopAfter(stop_after))
    assert part.state == "interrupted"
    assert resume_experiment(part.run_dir, progress=False, report=False).state == "complete"
    for arm in (0, 1):
        a, b = _arrays(full, arm), _arrays(part.run_dir, arm)
        assert set(a) == set(b) and "gd_param_var" in a
        for key in a:
            if key != "wall_seconds":
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_noiseless_twin_at_finite_beta_keeps_the_old_contract(tmp_path):
    data = dict(LANGEVIN, twin="noiseless", scan=None)
    data.pop("twin_realizations")
    run_dir = _run(tmp_path, data=data).run_dir
    assert json.loads((run_dir / "config.json").read_text())["twin"] == "noiseless"
    z = _arrays(run_dir, 0)
    assert not (set(TWIN_ARRAYS) | {"gd_param_var"}) & set(z)


def test_matched_twin_differs_from_langevin_where_z_is_not_small(tmp_path):
    """Same seed, same noise draws: at z ~ 1 the matched twin's drift (erfcx factor) and spread
    (sqrt(A(z)) < 1) differ from Langevin's, so the twins' ensembles differ; NE is the same run."""
    data = dict(LANGEVIN, scan=None, beta=3e4)
    lang = _arrays(_run(tmp_path, "l", data=data).run_dir, 0)
    matched = _arrays(_run(tmp_path, "m", data=dict(data, twin="matched")).run_dir, 0)
    np.testing.assert_array_equal(lang["param_mean"], matched["param_mean"])
    assert np.all(matched["gd_param_var"][1:] < lang["gd_param_var"][1:])


def test_twin_loss_gradient_matches_autograd():
    from negd.experiments.run.twin import TwinLoss
    from negd.losses.base import value_and_grad
    from negd.losses.mlp import MLPLoss
    from negd.losses.models import MLPSpec
    from negd.tasks import get_task

    task = get_task("sin2pi")
    gen = torch.Generator().manual_seed(0)
    for spec in (MLPSpec(1, 16, output_bias=True), MLPSpec(1, 16, output_bias=False), MLPSpec(2, 5)):
        loss_fn = MLPLoss(spec, task.inputs, task.targets, backend="torch")
        params = 0.5 * torch.randn(3, spec.n_params, generator=gen)
        loss_a, grad_a = value_and_grad(loss_fn, params)
        loss_b, grad_b = TwinLoss(loss_fn).value_and_grad(params)
        assert TwinLoss(loss_fn).fast  # tanh with mse: closed-form backprop at any depth
        torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad_b, grad_a, rtol=1e-4, atol=1e-5)
