"""negd bench control: batched torch CartPole against gymnasium's CartPoleVectorEnv (a smoke run)."""

from __future__ import annotations

import json

import pytest
import torch

from negd.bench.control import _policies, main, measure
from negd.envs import CartPole, episode_starts, rollout
from negd.envs.rollout import mlp_policy
from negd.losses.models import MLPSpec

pytest.importorskip("gymnasium", reason="gymnasium is not installed (pip install gymnasium)")


def test_the_bench_policies_balance():
    spec = MLPSpec(depth=1, width=8, in_features=4, out_features=2)
    params = _policies(spec, 4, 0, torch.float64)
    starts = episode_starts(CartPole(), 0, torch.arange(4), 0, 8)
    assert (rollout(CartPole(), mlp_policy(spec), params, starts) == 500).all()


def test_measure_reports_both_sides_and_their_ratio(tmp_path):
    res = measure(realizations=2, episodes=2, vector_steps=30, repeats=1)
    assert res["negd"][0]["env_steps"] == 2 * 2 * 500  # balancing policies: every episode to truncation
    assert res["gymnasium"][0]["env_steps"] == 4 * 30
    ratio = res["negd_env_steps_per_cpu_s"] / res["gymnasium_env_steps_per_cpu_s"]
    assert res["ratio_cpu"] == pytest.approx(ratio)
    argv = ["--sizes", "2x2", "--repeats", "1", "--vector-steps", "20", "--out", str(tmp_path / "r")]
    threads = torch.get_num_threads()
    assert main(argv) == 0
    assert torch.get_num_threads() == threads  # the bench restores the thread count
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["results"][0]["realizations"] == 2 and "cpu" in saved["machine"]
    assert "ratio (CPU)" in (tmp_path / "r.md").read_text()
