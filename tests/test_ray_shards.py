"""Shards as Ray tasks (negd.experiments.shards.on_ray): same numbers as the unsharded run.

The tests that need Ray skip when it is not installed (``pip install -e ".[ray]"``); they share one
local cluster of 2 CPUs for the session (a cluster takes several seconds to start).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
import torch

from negd.cli import main
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.experiments.shards.on_ray import state_from_arrays, state_to_arrays
from negd.state import State
from negd.validation import NegdError
from tests.test_shards import FINITE, TINY, _assert_same_arms

# One interval of 300 000 NE steps per realization (about 1.5 s per shard here), a twin of 3000 GD steps.
LONG = TINY | {"realizations": 2, "t_final": 3.0, "lambda": 0.01, "n_snapshots": 2, "scan": None}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_state_round_trips_through_plain_arrays():
    state = State(torch.randn(3, 4), torch.rand(3, dtype=torch.float64), 7, 11, torch.tensor([4, 5, 6]),
                  torch.tensor([True, False, True]), {"grad": torch.randn(3, 4)})
    arrays = state_to_arrays(state)
    for value in arrays.values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # as Ray returns them
    back = state_from_arrays(arrays)
    for key in ("params", "loss", "realization", "accepted", "tied"):
        assert torch.equal(getattr(back, key), getattr(state, key)), key
    assert torch.equal(back.extras["grad"], state.extras["grad"])
    assert (back.step, back.seed) == (7, 11)


def test_missing_ray_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(NegdError, match=r"pip install -e '\.\[ray\]'"):
        run_experiment(config_from_dict(TINY), tmp_path / "r", progress=False, report=False, ray="local")


def test_unreachable_address_is_one_line(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    config = tmp_path / "tiny.yaml"
    config.write_text(str(TINY).replace("'", '"').replace("None", "null"))
    start = time.perf_counter()
    # Port 1 on this machine: nothing listens there.
    args = ["run", str(config), "--ray", "127.0.0.1:1", "--no-progress", "--out", str(tmp_path / "r")]
    assert main(args) == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--ray: cannot reach a Ray cluster at '127.0.0.1:1'" in err
    assert not (tmp_path / "r" / "config.json").exists()


@pytest.mark.parametrize("k", [1, 3, 7])
def test_ray_shards_equal_unsharded(tmp_path, ray_cluster, k):
    whole = run_experiment(config_from_dict(TINY), tmp_path / "whole", progress=False, report=False)
    on_ray = run_experiment(config_from_dict(TINY), tmp_path / "ray", progress=False, report=False, shards=k,
                            ray="local")  # the session's cluster is used, and left running
    assert on_ray.state == "complete" and ray_cluster.is_initialized()
    _assert_same_arms(whole.run_dir, on_ray.run_dir, 2)


def test_ray_langevin_twin_shards_equal_unsharded(tmp_path, ray_cluster):
    whole = run_experiment(config_from_dict(FINITE), tmp_path / "whole", progress=False, report=False)
    on_ray = run_experiment(config_from_dict(FINITE), tmp_path / "ray", progress=False, report=False,
                            shards=2, ray="local")
    _assert_same_arms(whole.run_dir, on_ray.run_dir, 1)


def _kill_writer_of(path, killed: dict, timeout: float = 60.0) -> None:
    """SIGKILL the process whose pid the shard checkpoint ``path`` records, as soon as it appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and "pid" not in killed:
        try:
            saved = torch.load(path, weights_only=True)
            killed["step"], killed["pid"] = saved["state"]["step"], saved["pid"]
        except (OSError, RuntimeError, EOFError, KeyError):  # not there yet
            time.sleep(0.01)
    if "pid" in killed:
        os.kill(killed["pid"], signal.SIGKILL)


def test_killed_worker_is_retried_and_continues_from_its_checkpoint(tmp_path, ray_cluster, monkeypatch,
                                                                    capsys):
    from negd.experiments.run import runner

    updates: list[int] = []  # the progress bar's updates (it moves while the shards run)
    monkeypatch.setattr(runner.ArmProgress, "update", lambda self, n: updates.append(n))
    whole = run_experiment(config_from_dict(LONG), tmp_path / "whole", progress=False, report=False)
    updates.clear()
    killed: dict = {}
    killer = threading.Thread(target=_kill_writer_of, daemon=True,
                              args=(tmp_path / "ray" / "arms" / "0" / "shards" / "ne-0-1.pt", killed))
    killer.start()
    on_ray = run_experiment(config_from_dict(LONG), tmp_path / "ray", progress=False, report=False, shards=2,
                            ray="local", shard_checkpoint_seconds=0.05)
    killer.join(timeout=10)
    assert on_ray.state == "complete" and killed.get("pid") not in (None, os.getpid())
    assert killed["step"] < 300_000, "the shard completed before the kill: make LONG longer"
    _assert_same_arms(whole.run_dir, on_ray.run_dir, 1)
    # The retried task continued from the killed worker's last checkpoint, not from the start.
    err = capsys.readouterr().err
    resumed = [line for line in err.splitlines() if "shard 0 of arm 0 (NE, realizations 0-0): found its "
               "checkpoint at step" in line]
    assert len(resumed) == 1 and resumed[0].endswith("and continued from it (attempt 2)"), err
    step = int(resumed[0].split("at step ")[1].split()[0])
    assert killed["step"] <= step < 300_000
    assert sum(updates) == 2 * 300_000 and len(updates) > 2  # more than one update per shard
    assert not any((on_ray.run_dir / "arms" / "0" / "shards").iterdir())


def test_task_that_raises_fails_the_run_in_one_line_and_resume_completes(tmp_path, ray_cluster, capsys):
    """A Ray task that raises is not retried: the run fails with one line naming the shard, keeps what
    it wrote, and --resume completes it identical to an uninterrupted run. The fault: shard 0's
    checkpoint path is a directory, so the worker cannot save its checkpoint."""
    whole = run_experiment(config_from_dict(TINY), tmp_path / "whole", progress=False, report=False)

    def stop(arm, row):
        if (arm, row) == (0, 1):
            raise KeyboardInterrupt

    out = tmp_path / "ray"
    run_experiment(config_from_dict(TINY), out, progress=False, report=False, shards=2, ray="local",
                   on_snapshot=stop)
    blocker = out / "arms" / "0" / "shards" / "ne-0-4.pt"
    blocker.mkdir(parents=True)
    with pytest.raises(NegdError) as e:
        resume_experiment(out, progress=False, report=False, ray="local")
    assert str(e.value).startswith("shard 0 of arm 0 (NE, realizations 0-3) failed on Ray: ")
    assert "\n" not in str(e.value) and "Error" in str(e.value)
    assert torch.load(out / "arms" / "0" / "checkpoint.pt", weights_only=True)["rows"] == 2  # kept
    blocker.rmdir()
    assert resume_experiment(out, progress=False, report=False, ray="local").state == "complete"
    _assert_same_arms(whole.run_dir, out, 2)
