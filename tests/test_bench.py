"""Tests of the ``negd bench`` harness: smoke runs (not timed) and agreement of the peers."""

from __future__ import annotations

import json

import pytest
import torch

import negd
from negd.bench import cli
from negd.bench.factory import make_peer
from negd.bench.peers import LOOP_REALIZATIONS, jax_available, jax_loss_fn
from negd.bench.workloads import WORKLOADS, ClassifierWorkload, initial_params

needs_jax = pytest.mark.skipif(not jax_available(), reason="jax is not installed (pip install 'negd[bench]')")
PEERS_HERE = ["negd", "loop", "torch", "grad"] + (["jax"] if jax_available() else [])
REGRESSION = [w for w, v in WORKLOADS.items() if not isinstance(v, ClassifierWorkload)]
CLASSIFIERS = [w for w, v in WORKLOADS.items() if isinstance(v, ClassifierWorkload)]


def test_quick_run_writes_markdown_and_json(tmp_path, capsys):
    out = tmp_path / "results.md"
    assert cli.main(["--quick", "--out", str(out), "--peers", ",".join(PEERS_HERE)]) == 0
    assert cli.QUICK_WARNING in capsys.readouterr().err  # its 0.02 s timings mean nothing: it says so
    assert cli.QUICK_WARNING in out.read_text()
    report = json.loads(out.with_suffix(".json").read_text())
    assert {"cpu", "cores", "torch", "date", "git_commit"} <= set(report["machine"])
    assert [(r["workload"], r["realizations"]) for r in report["rows"]] == [("shallow", 1), ("shallow", 4)]
    for row in report["rows"]:
        assert row["path"] in ("torch", "fused kernel")
        for peer in PEERS_HERE:
            assert row["rates"][peer] > 0, (peer, row["status"][peer])
        assert row["limit"] > 0 and row["mutation_over_gradient_cost"] > 0
    text = out.read_text()
    assert "| shallow | 4 |" in text and "## Targets" in text


def test_isolated_cell_reports_its_own_peak_memory():
    spec = {"kind": "peer", "peer": "negd", "workload": "shallow", "realizations": 2, "device": "cpu",
            "seconds": 0.01, "repeats": 1}
    cell = cli._run(spec, isolate=True, timeout=300)
    assert cell["status"] == "ok", cell
    assert cell["rate"] > 0 and cell["peak_rss_mb"] >= cell["baseline_rss_mb"] > 0


def test_bad_arguments_are_refused(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--workloads", "shallow,bogus"])
    with pytest.raises(SystemExit):
        cli.main(["--realizations", "0"])
    assert cli.main(["--seconds", "0", "--quick"]) == 2
    assert "seconds" in capsys.readouterr().err


@pytest.mark.parametrize("peer", PEERS_HERE)
def test_every_peer_decreases_the_loss(peer):
    # beta = inf: a realization's loss can never go up, and 60 steps of sigma = 0.01 from
    # PyTorch's default init must bring the mean down (deterministic given the seeds).
    runner = make_peer(peer, WORKLOADS["shallow"], 3, seed=1)
    start = runner.losses().clone()
    runner.run(getattr(runner, "quantum", 1) * max(1, 60 // getattr(runner, "quantum", 1)))
    end = runner.losses()
    assert end.shape == start.shape
    if peer != "grad":  # a gradient step of finite size may overshoot; the others are monotone
        assert bool((end <= start).all())
    assert float(end.mean()) < float(start.mean())


def test_loop_simulates_a_few_realizations():
    runner = make_peer("loop", WORKLOADS["shallow"], 1000)
    assert runner.realization_steps_per_step == LOOP_REALIZATIONS


@pytest.mark.parametrize("name", REGRESSION)
def test_peers_evaluate_the_same_loss_as_mlploss(name):
    workload = WORKLOADS[name]
    task = workload.task()
    params = initial_params(workload, 3, seed=2)
    reference = negd.MLPLoss(workload.spec, task.inputs, task.targets, backend="torch")(params)
    eager = make_peer("torch", workload, 3, seed=2)
    torch.testing.assert_close(eager.losses(), reference, rtol=1e-5, atol=1e-7, check_dtype=False)
    loop = make_peer("loop", workload, 3, seed=2)
    torch.testing.assert_close(loop.losses().double(), reference, rtol=1e-5, atol=1e-7)


@needs_jax
@pytest.mark.parametrize("name", REGRESSION)
def test_jax_peer_evaluates_the_same_loss_as_mlploss(name):
    import jax.numpy as jnp
    import numpy as np

    workload = WORKLOADS[name]
    task = workload.task()
    params = initial_params(workload, 3, seed=3)
    reference = negd.MLPLoss(workload.spec, task.inputs, task.targets, backend="torch")(params)
    got = np.asarray(jax_loss_fn(workload)(jnp.asarray(params.numpy())))
    # float32 sums over ~1000 points in a different order: relative differences ~1e-6.
    np.testing.assert_allclose(got, reference.numpy(), rtol=1e-4, atol=1e-7)


def test_targets_are_judged_from_the_rows():
    rows = [{"workload": "shallow", "realizations": 1000, "negd_over_jax": 4.0, "negd_over_loop": 30.0,
             "fraction_of_limit_cpu": 0.2, "fraction_of_fma_peak": 0.1, "mutation_over_gradient_cost": 0.3},
            {"workload": "deep", "realizations": 100, "negd_over_jax": None, "negd_over_loop": None,
             "fraction_of_limit_cpu": 0.6, "fraction_of_fma_peak": 0.65, "mutation_over_gradient_cost": 0.7}]
    met = {t["target"]: t["met"] for t in cli._targets(rows, {"status": "ok", "peak_rss_mb": 900.0})}
    assert met["shallow R=1000: negd >= 3x JAX"] is True
    assert met["shallow R=1000: negd >= 40x authors-style loop"] is False
    # deep: judged per CPU-second against the FMA+tanh limit (met) and the FMA peak (0.65 < 0.70)
    assert met["deep R=100: negd >= 0.5 of the FMA+tanh limit"] is True
    assert met["deep R=100: negd >= 0.7 of the FMA peak"] is False
    assert met["mutation step <= 0.5x gradient step cost (worst cell, R >= 100)"] is False
    assert met["shallow R=100,000: peak RSS < 2048 MB"] is True
    assert {k: v for k, v in met.items() if k.startswith(("digits-mlp", "digits-cnn"))} == {
        k: None for k in met if k.startswith(("digits-mlp", "digits-cnn"))}


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifier_peers_evaluate_the_same_cross_entropy(name):
    pytest.importorskip("sklearn")
    workload = WORKLOADS[name]
    losses = {p: make_peer(p, workload, 2, seed=2).losses() for p in ("negd", "generic", "loop", "grad")}
    for peer, value in losses.items():
        torch.testing.assert_close(value.double(), losses["generic"].double(), rtol=2e-6, atol=0, msg=peer)
    assert make_peer("jax", workload, 2) is None and make_peer("torch", workload, 2) is None
    path = type(make_peer("negd", workload, 2).loss_fn).__name__
    assert path == ("MLPLoss" if name == "digits-mlp" else "ModuleLoss")
    # forward FLOPs of the limit: 2 x P x multiply-adds of one example
    macs = 64 * 32 + 32 * 10 if name == "digits-mlp" else 8 * 64 * 9 + 512 * 10
    assert workload.flops_per_step == 2 * 1347 * macs


def test_unwritable_out_fails_before_running(tmp_path, capsys):
    """Issue 11, defect 8: `negd bench --out` into an unwritable folder ran the whole benchmark, then
    lost its JSON and exited 0."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert cli.main(["--quick", "--out", str(blocker / "results.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out: cannot write into" in err[0], err


def test_limit_is_the_fma_peak_and_tanh_throughput():
    from negd import kernels
    from negd.bench.cell import run_cell
    from negd.kernels import limits

    if not kernels.available():
        pytest.skip("the C kernels are unavailable (no compiler): the limit is torch's rate then")
    cell = run_cell({"kind": "limit", "workload": "deep", "seconds": 0.05, "threads": 1})
    assert cell["status"] == "ok" and cell["basis"] == "fma+tanh" and cell["cores"] == 1
    assert cell["flops_per_step"] == 2 * 1001 * (32 + 7 * 32 * 32 + 32)
    assert cell["tanh_per_step"] == 1001 * 8 * 32
    assert cell["rate"] == pytest.approx(limits.step_limit(cell["flops_per_step"], cell["tanh_per_step"],
                                                           cell["fma_peak_flops"], cell["tanh_per_s"]))
    # the FMA-only bound is looser than the one that also pays for the tanh's
    assert cell["fma_only_rate"] > cell["rate"] > 0 and cell["torch"]["rate"] > 0
    assert limits.step_limit(2.0, 1.0, 4.0, 2.0) == 1.0


def test_compare_refuses_bad_arguments_and_formats_its_report(capsys):
    from negd.bench import compare

    assert compare.main(["HEAD", "--workloads", "deep,bogus"]) == 2
    assert "workloads" in capsys.readouterr().err
    assert compare.main(["HEAD", "--rounds", "0"]) == 2
    report = {"base": "a" * 40, "tree": "b" * 40, "rounds": 2, "seconds": 1.0, "fma_peak_flops": 1e11,
              "machine": {"cpu": "x", "cores": 2, "python": "3", "load_average_1_5_15": [1, 1, 1],
                          "date": "d"},
              "rows": [{"workload": "deep", "tree": 90.0, "base": 100.0, "ratio": 0.9,
                        "tree_fma_fraction": 0.5, "base_fma_fraction": 0.55},
                       {"workload": "digits-mlp", "tree": 10.0, "base": None, "ratio": None,
                        "tree_fma_fraction": None, "base_fma_fraction": None}]}
    text = compare.markdown(report)
    assert "| deep | 90 | 100 | 0.90 | 0.50 | 0.55 |" in text and "| digits-mlp | 10 | n/a |" in text
    assert "Regressions (tree/base < 0.97): deep" in text
