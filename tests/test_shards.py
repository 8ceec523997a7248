"""Sharded runs (negd.experiments.shards.inprocess): the same run directory as the unsharded run,
for any K."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from negd.cli import main
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.experiments.run.store import load_rows
from negd.experiments.shards.inprocess import merge, shard_bounds, split
from negd.state import State
from negd.validation import NegdError

# R = 7 in both arms: K = 7 gives one realization per shard, K = 3 unequal shards (3, 2, 2).
TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.1}, "beta": "inf", "alpha": 1e-3, "lambda": 1,
        "realizations": 7, "t_final": 0.03, "n_snapshots": 4, "trajectories": 2, "seed": 5,
        "scan": {"factors": [2], "realizations": 7}}
# Finite beta with a Langevin twin ensemble of 5 (sharded too: 3 shards of 2, 2, 1).
FINITE = TINY | {"beta": 1000.0, "gd_rule": "gradient_descent", "twin": "langevin", "twin_realizations": 5,
                 "scan": None}


def _run(tmp_path, name, data=TINY, **kw):
    kw.setdefault("report", False)
    return run_experiment(config_from_dict(data), tmp_path / name, progress=False, **kw)


def _arrays(run_dir, arm):
    return load_rows(run_dir / "arms" / str(arm))  # verified; without the checksum


def _assert_same_arms(a, b, n_arms):
    """Every stored snapshot array (wall time aside) and the final states equal, bit for bit."""
    for arm in range(n_arms):
        x, y = _arrays(a, arm), _arrays(b, arm)
        assert set(x) == set(y)
        for key in x:
            if key != "wall_seconds":
                np.testing.assert_array_equal(x[key], y[key], err_msg=f"arm {arm}: {key}")
        cx = torch.load(a / "arms" / str(arm) / "checkpoint.pt", weights_only=True)
        cy = torch.load(b / "arms" / str(arm) / "checkpoint.pt", weights_only=True)
        for part in ("ne", "gd"):
            for key in ("params", "loss", "realization", "accepted"):
                assert torch.equal(cx[part][key], cy[part][key]), f"arm {arm}: {part}.{key}"


def test_shard_bounds_cover_every_realization_once():
    for n in (1, 2, 7, 10, 101):
        for k in (1, 2, 3, 7, 64):
            bounds = shard_bounds(n, k)
            assert len(bounds) == min(n, k)
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(b[0] == a[1] for a, b in zip(bounds, bounds[1:]))
            sizes = [stop - start for start, stop in bounds]
            assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


def test_merge_orders_by_realization_not_by_arrival():
    state = State(torch.arange(12.0).reshape(6, 2), torch.arange(6.0, dtype=torch.float64), 3, 1,
                  torch.arange(6), torch.zeros(6, dtype=torch.bool))
    shards = split(state, 3)
    merged = merge(shards[::-1])
    assert torch.equal(merged.params, state.params) and torch.equal(merged.realization, state.realization)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_sharded_run_equals_unsharded(tmp_path, k):
    whole = _run(tmp_path, "whole")
    sharded = _run(tmp_path, f"k{k}", shards=k)
    assert whole.state == sharded.state == "complete"
    _assert_same_arms(whole.run_dir, sharded.run_dir, 2)
    path = json.loads((sharded.run_dir / "config.json").read_text())["compute_path"]
    assert path["shards"] == k and path["engine"] == "in-process"
    assert "shards" not in json.loads((whole.run_dir / "config.json").read_text())["compute_path"]


@pytest.mark.parametrize("twin", ["langevin", "matched", "mean-field"])
def test_sharded_ensemble_twin_equals_unsharded(tmp_path, twin):
    data = FINITE | {"twin": twin} | ({"twin_proposals": 8} if twin == "mean-field" else {})
    whole = _run(tmp_path, "whole", data)
    sharded = _run(tmp_path, "k3", data, shards=3)
    _assert_same_arms(whole.run_dir, sharded.run_dir, 1)


def _without_wall(rows):
    return [{k: v for k, v in row.items() if "wall" not in k} for row in rows]


def test_sharded_report_numbers_equal_unsharded(tmp_path):
    from negd.analysis import build_report

    whole = _run(tmp_path, "whole")
    # The shard count from the configuration file's ``shards`` key, through the command line.
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY | {"shards": 3}))  # JSON is YAML
    assert main(["run", str(config), "--out", str(tmp_path / "k3"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "k3" / "config.json").read_text())["compute_path"]["shards"] == 3
    _assert_same_arms(whole.run_dir, tmp_path / "k3", 2)
    build_report(whole.run_dir, figures=False)
    build_report(tmp_path / "k3", figures=False)
    a = json.loads((whole.run_dir / "summary.json").read_text())
    b = json.loads((tmp_path / "k3" / "summary.json").read_text())
    a.pop("wall_seconds"), b.pop("wall_seconds")
    assert a == b
    read = lambda d: list(csv.DictReader((d / "timeseries.csv").open()))  # noqa: E731
    assert _without_wall(read(whole.run_dir)) == _without_wall(read(tmp_path / "k3"))


def test_interrupted_sharded_run_resumes_with_another_count(tmp_path):
    whole = _run(tmp_path, "whole")

    def stop(arm, row):
        if (arm, row) == (0, 2):
            raise KeyboardInterrupt

    part = _run(tmp_path, "part", shards=3, on_snapshot=stop)
    assert part.state == "interrupted"
    # Without --shards the run continues with its recorded 3 shards; here with 2 (same numbers).
    done = resume_experiment(part.run_dir, progress=False, report=False, shards=2)
    assert done.state == "complete"
    _assert_same_arms(whole.run_dir, part.run_dir, 2)
    assert json.loads((part.run_dir / "config.json").read_text())["compute_path"]["shards"] == 2


def test_more_shards_than_realizations_is_refused(tmp_path):
    with pytest.raises(NegdError, match=r"shards: 8 is more than the 7 realizations"):
        _run(tmp_path, "k8", shards=8)
    assert not (tmp_path / "k8").exists()  # refused before anything was written


def test_cli_more_shards_than_realizations_is_one_line(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    assert main(["run", str(config), "--out", str(tmp_path / "a"), "--no-progress", "--shards", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "shards: 9 is more than the 7 realizations" in err
    assert main(["run", str(config), "--no-progress", "--shards", "0"]) == 2
    assert "--shards: must be an integer >= 1" in capsys.readouterr().err
