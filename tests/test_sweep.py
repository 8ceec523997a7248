"""Sweeps (negd.experiments.sweep.grid, sweep_report): grid parsing, one run per point, resume, the map."""

from __future__ import annotations

import json
import math

import pytest

from negd.cli import main
from negd.experiments.sweep.grid import checked_grid, parse_grid_option, plan_sweep
from negd.experiments.sweep.report import theory_inside
from negd.validation import NegdError

TINY_YAML = """
network: {depth: 1, width: 4, output_bias: false}
init: {kind: paper, sigma0: 0.1}
beta: inf
alpha: 1e-3
lambda: 1
realizations: 4
t_final: 0.02
n_snapshots: 3
trajectories: 2
seed: 5
"""
GRID = ["--grid", "lambda=0.5,1", "--grid", "beta=inf,1000"]


def test_grid_option_parsing():
    assert parse_grid_option("beta=inf,1000, 100") == ("beta", [math.inf, 1000.0, 100.0])
    assert parse_grid_option("realizations=4,8") == ("realizations", [4, 8])
    assert checked_grid({"sigma": [1e-3]}, ["sigma=2e-3,4e-3"]) == {"sigma": [2e-3, 4e-3]}


@pytest.mark.parametrize(("file_grid", "options", "message"), [
    (None, [], "grid: empty"),
    ({}, [], "grid: empty"),
    (None, ["width=1,2"], "grid: unknown key 'width'"),
    (None, ["sigma=a,b"], "grid sigma: values must be numbers, got 'a'"),
    (None, ["sigma=inf"], "grid sigma: values must be numbers"),
    (None, ["realizations=2.5"], "grid realizations: values must be integers"),
    (None, ["sigma="], "--grid: sigma: give at least one value"),
    (None, ["sigma"], "--grid: must be KEY=V1,V2"),
    (None, ["sigma=1e-3", "lambda=1"], "grid: give either sigma or lambda"),
    ({"beta": []}, [], "grid: beta: give at least one value"),
])
def test_bad_grids_are_one_line_errors(file_grid, options, message):
    with pytest.raises(NegdError) as info:
        checked_grid(file_grid, options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_points_replace_the_paired_key_and_are_validated_first():
    base = {"lambda": 1, "alpha": 1e-3, "realizations": 4, "t_final": 0.02}
    points = plan_sweep(base, {"beta": [math.inf, 1000.0], "realizations": [4]})
    assert [p.name for p in points] == ["p000-beta=inf_realizations=4", "p001-beta=1000_realizations=4"]
    assert points[1].config.twin == "langevin"  # finite beta gets its default twin
    sigma_points = plan_sweep(base, {"sigma": [2 * (2 * math.pi) ** 0.5 * 1e-3]})  # lambda = 2
    assert sigma_points[0].config.lam == 2.0
    mixed = plan_sweep(base | {"twin_realizations": 3}, {"beta": [math.inf, 1000.0]})
    assert [p.config.twin_realizations for p in mixed] == [None, 3]  # for the finite-beta points only
    with pytest.raises(NegdError, match=r"grid point p001-realizations=1: trajectories"):
        plan_sweep(base | {"trajectories": 2}, {"realizations": [4, 1]})


def test_theory_region():
    assert theory_inside(math.inf, math.inf, 0.05) is True
    assert theory_inside(math.inf, math.inf, 0.2) is False
    assert theory_inside(1000.0, 0.05, 0.05) is True
    assert theory_inside(1000.0, 0.5, 0.05) is False
    assert theory_inside(1000.0, math.nan, 0.05) is None
    # c is a ratio of signed curvature to |g|: negative curvature as large is as far from linear
    assert theory_inside(math.inf, math.inf, -0.2) is False
    # the spread s (mutation noise a noiseless twin lacks) puts a point outside on its own
    assert theory_inside(math.inf, math.inf, 0.05, s=0.04) is True
    assert theory_inside(math.inf, math.inf, 0.05, s=0.2) is False
    assert theory_inside(math.inf, math.inf, 0.05, s=math.nan) is None


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    (root / "tiny.yaml").write_text(TINY_YAML)
    out = root / "out"
    args = ["sweep", str(root / "tiny.yaml"), *GRID, "--out", str(out), "--no-progress", "--shards", "2"]
    assert main(args) == 0
    return out


def test_two_by_two_sweep_writes_every_point_and_the_map(sweep_dir):
    data = json.loads((sweep_dir / "sweep.json").read_text())
    assert data["grid"] == {"lambda": [0.5, 1.0], "beta": ["inf", 1000.0]}
    assert [p["values"] for p in data["points"]] == [
        {"lambda": 0.5, "beta": "inf"}, {"lambda": 0.5, "beta": 1000.0},
        {"lambda": 1.0, "beta": "inf"}, {"lambda": 1.0, "beta": 1000.0}]
    for point in data["points"]:
        run = sweep_dir / point["name"]
        summary = json.loads((run / "summary.json").read_text())
        assert point["state"] == "complete" and point["verdict"] == summary["verdict"]
        assert point["c_final"] == pytest.approx(summary["c_final"])
        assert point["s_final"] == pytest.approx(summary["s_final"])
        assert (point["s_final"] == 0.0) == (point["values"]["beta"] != "inf")  # langevin twin: no s
        assert point["acceptance_measured"] == pytest.approx(summary["acceptance_measured"])
        assert json.loads((run / "config.json").read_text())["compute_path"]["shards"] == 2
    assert (sweep_dir / "sweep.png").stat().st_size > 0
    table = [line for line in (sweep_dir / "sweep.md").read_text().splitlines() if line.startswith("| p0")]
    assert len(table) == 4
    failing = [p for p in data["points"]
               if p["verdict"] == "fails" and p["theory_inside"] is not None]
    assert data["failing"] == len(failing)
    assert data["failing_outside"] == sum(not p["theory_inside"] for p in failing)


def test_rerun_skips_complete_points_and_resumes_interrupted_ones(sweep_dir, capsys):
    point = sweep_dir / "p001-lambda=0.5_beta=1000"
    summary_before = json.loads((point / "summary.json").read_text())
    status = json.loads((point / "status.json").read_text())
    (point / "status.json").write_text(json.dumps(status | {"state": "interrupted", "report": "interrupted"}))
    config = sweep_dir.parent / "tiny.yaml"
    assert main(["sweep", str(config), *GRID, "--out", str(sweep_dir), "--no-progress"]) == 0
    log = capsys.readouterr().err
    assert log.count("complete, skipped") == 3 and "p001-lambda=0.5_beta=1000: resuming" in log
    after = json.loads((point / "summary.json").read_text())
    after.pop("wall_seconds"), summary_before.pop("wall_seconds")
    assert after == summary_before


def test_another_grid_into_the_same_directory_is_refused(sweep_dir, capsys):
    config = sweep_dir.parent / "tiny.yaml"
    args = ["sweep", str(config), "--grid", "lambda=0.25", "--out", str(sweep_dir), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "holds another sweep" in err
    assert (sweep_dir / "p000-lambda=0.5_beta=inf" / "summary.json").exists()


def test_cli_bad_grid_is_one_line(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    assert main(["sweep", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.strip() == (
        "negd: error: grid: empty; give --grid KEY=V1,V2,... or a grid section in the configuration")
    assert main(["sweep", str(tmp_path / "tiny.yaml"), "--grid", "depth=1,2"]) == 2
    assert "grid: unknown key 'depth'" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
