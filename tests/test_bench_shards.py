"""``python -m negd.bench.shards``: its workloads, its table and a smoke run (not timed)."""

from __future__ import annotations

import json

import pytest

from negd.bench import shards


@pytest.mark.parametrize("name", list(shards.WORKLOADS))
def test_workload_config_has_the_stated_work(name):
    config = shards.workload_config(name, cores=3)
    spec = shards.WORKLOADS[name]
    arms = config.arms()
    assert len(arms) == 1  # no sigma scan: one arm
    assert arms[0].realizations == 3 * spec["per_core"]
    assert arms[0].ne_steps == spec["ne_steps"]
    assert config.n_snapshots == spec["n_snapshots"]


def _results(ray_rate: float, shards1_rate: float) -> dict:
    med = {"unsharded": 100.0, "shards-1": shards1_rate, "ray": ray_rate}
    return {"ray_start_seconds": 6.0, "workloads": {"shallow": {
        "realizations": 64, "ne_steps": 40_000, "n_snapshots": 5, "rates": {}, "median": med,
        "ray_ratio": ray_rate / 100.0, "shards1_overhead": 100.0 / shards1_rate - 1.0}}}


@pytest.mark.parametrize("ray_rate, shards1_rate, marks", [
    (85.0, 99.0, ("0.85 (met)", "+1.0% (met)")),
    (70.0, 90.0, ("0.70 (NOT met)", "+11.1% (NOT met)")),
])
def test_table_judges_the_targets(ray_rate, shards1_rate, marks):
    machine = {"cpu": "test cpu", "cores": 2, "torch": "x", "load_average_1_5_15": [0.0, 0.0, 0.0],
               "date": "today", "git_commit": "abc"}
    table = shards.render(_results(ray_rate, shards1_rate), machine, cores=2)
    for mark in marks:
        assert mark in table


def test_unknown_workload_is_one_line(capsys):
    assert shards.main(["--workloads", "shallow,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--workloads" in err and "nope" in err and "\n" not in err


def test_smoke_run_writes_markdown_and_json(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    tiny = {"experiment": "shallow", "per_core": 2, "ne_steps": 200, "n_snapshots": 2}
    monkeypatch.setitem(shards.WORKLOADS, "shallow", tiny)
    out = tmp_path / "shards.md"
    assert shards.main(["--workloads", "shallow", "--rounds", "1", "--cores", "2", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    row = report["workloads"]["shallow"]
    assert all(rate > 0 for rates in row["rates"].values() for rate in rates)
    assert row["realizations"] == 4 and report["ray_start_seconds"] > 0
    assert "| shallow | 4 | 200 |" in out.read_text()
