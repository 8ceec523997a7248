"""negd bench control: the fused kernel, the torch loop and gymnasium's vector environments (a smoke run)."""

from __future__ import annotations

import json

import pytest
import torch

from negd.bench.control import _policies, main, measure, policy_flops
from negd.envs import CartPole, episode_starts, rollout
from negd.envs.rollout import mlp_policy
from negd.losses.models import MLPSpec
from negd.validation import NegdError

pytest.importorskip("gymnasium", reason="gymnasium is not installed (pip install gymnasium)")


def test_the_bench_policies_balance():
    spec = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
    params = _policies(spec, 4, 0, torch.float64)
    starts = episode_starts(CartPole(), 0, torch.arange(4), 0, 8)
    assert (rollout(CartPole(), mlp_policy(spec), params, starts, kernel=False) == 500).all()


def test_measure_reports_three_sides_and_their_ratios():
    res = measure(realizations=2, episodes=2, vector_steps=30, repeats=2, fma_peak=1e9)
    for side in ("kernel", "torch"):  # balancing policies: every episode to truncation
        assert [r["env_steps"] for r in res["runs"][side]] == [2 * 2 * 500] * 2
    assert res["runs"]["gymnasium"][0]["env_steps"] == 4 * 30
    ratio = res["kernel_env_steps_per_cpu_s"] / res["gymnasium_env_steps_per_cpu_s"]
    assert res["kernel_vs_gymnasium"] == pytest.approx(ratio)
    assert res["width"] == 8 and res["target_ratio"] == 20.0
    assert res["kernel_fma_peak_fraction"] == pytest.approx(res["kernel_env_steps_per_cpu_s"] * 96 / 1e9)
    pend = measure(realizations=2, episodes=3, vector_steps=4, repeats=1, env="pendulum")
    assert pend["runs"]["kernel"][0]["env_steps"] == 2 * 3 * 200 and pend["target_ratio"] is None
    assert pend["runs"]["gymnasium"][0]["env_steps"] == 6 * 4


def test_policy_flops_counts_the_multiply_adds():
    assert policy_flops(MLPSpec(depth=1, width=8, in_features=4, out_features=2)) == 2 * (32 + 16)


def test_main_writes_both_files_and_restores_threads(tmp_path):
    argv = ["--sizes", "2x2", "--repeats", "1", "--vector-steps", "20", "--pendulum-vector-steps", "3",
            "--dtype", "float64", "--out", str(tmp_path / "r")]
    threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # the bench restores the thread count
    saved = json.loads((tmp_path / "r.json").read_text())
    assert [r["env"] for r in saved["results"]] == ["CartPole-v1", "Pendulum-v1"]
    assert "cpu" in saved["machine"] and saved["results"][0]["kernel_used"] in (True, False)
    assert "kernel / gymnasium" in (tmp_path / "r.md").read_text()
    with pytest.raises(NegdError, match="--envs"):
        main(["--envs", "acrobot", "--out", str(tmp_path / "x")])
    with pytest.raises(NegdError, match="--sizes"):
        main(["--sizes", "2y2", "--out", str(tmp_path / "x")])
