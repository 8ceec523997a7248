"""Sweeps (negd.experiments.sweep.grid, sweep_report): grid parsing, one run per point, resume, the map."""

from __future__ import annotations

import json
import math

import pytest

from negd.cli import main
from negd.experiments.sweep.grid import checked_grid, parse_grid_option, plan_sweep
from negd.experiments.sweep.report import theory_inside
from negd.validation import NegdError
from tests.runtools import TINY_YAML

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


# ------------------------------------------------------------------ exact point identity (issue 19, 2c)
@pytest.mark.parametrize(("text", "value"), [
    ("9007199254740993", 2**53 + 1), ("9007199254740992", 2**53), ("1e3", 1000), ("12.0", 12),
    ("123456789012345678901", 123456789012345678901), (2**60 + 1, 2**60 + 1), (8.0, 8)])
def test_integer_grid_values_are_exact(text, value):
    key, values = parse_grid_option(f"seed={text}") if isinstance(text, str) else ("seed", None)
    got = values[0] if values else checked_grid({"seed": [text]}, [])["seed"][0]
    assert got == value and isinstance(got, int)


def test_seeds_above_2_53_are_distinct_points():
    grid = checked_grid(None, ["seed=9007199254740992,9007199254740993"])
    points = plan_sweep({"lambda": 1, "alpha": 1e-3, "realizations": 4, "t_final": 0.02}, grid)
    assert [p.config.seed for p in points] == [2**53, 2**53 + 1]
    assert len({p.name for p in points}) == 2


@pytest.mark.parametrize("values", ["beta=inf,1000.0000001", "beta=inf,999.9999999", "beta=inf,1000.000001"])
def test_a_grid_that_prints_the_same_is_another_sweep(sweep_dir, capsys, values):
    """beta = 1000.0000001 prints as 1000 to 6 digits: still another sweep, refused, nothing written."""
    config = sweep_dir.parent / "tiny.yaml"
    before = sorted(p.name for p in sweep_dir.iterdir())
    args = ["sweep", str(config), "--grid", "lambda=0.5,1", "--grid", values, "--out", str(sweep_dir),
            "--no-progress"]
    assert main(args) == 2
    assert "holds another sweep" in capsys.readouterr().err
    assert sorted(p.name for p in sweep_dir.iterdir()) == before


def test_legacy_plan_points_checked_against_their_exact_settings(tmp_path, capsys):
    """A sweep directory from before exact values (6-digit labels in its plan): a grid whose labels
    match but whose values differ is refused, before anything runs, and no result changes."""
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    out = tmp_path / "out"

    def sweep(alpha: str) -> int:
        return main(["sweep", str(tmp_path / "tiny.yaml"), "--grid", f"alpha={alpha}", "--out", str(out),
                     "--no-progress"])

    assert sweep("0.001") == 0
    plan = json.loads((out / "sweep-plan.json").read_text())
    (out / "sweep-plan.json").write_text(json.dumps({"base_hash": plan["base_hash"],
                                                     "grid": {"alpha": ["0.001"]}}))
    summary = (out / "p000-alpha=0.001" / "summary.json").read_bytes()
    capsys.readouterr()
    assert sweep("0.001") == 0  # the same values: accepted, skipped, the plan now exact
    assert "complete, skipped" in capsys.readouterr().err
    assert "grid_exact" in json.loads((out / "sweep-plan.json").read_text())
    (out / "sweep-plan.json").write_text(json.dumps({"base_hash": plan["base_hash"],
                                                     "grid": {"alpha": ["0.001"]}}))
    assert sweep("0.0010000001") == 2  # labels match; its point is not the directory's
    assert "holds another sweep" in capsys.readouterr().err
    # an old sweep had named its point like this grid's point: its settings differ, refused
    (out / "p000-alpha=0.001").rename(out / "p000-alpha=0.0010000001")
    assert sweep("0.0010000001") == 2
    err = capsys.readouterr().err
    assert "grid point p000-alpha=0.0010000001" in err and "other settings" in err
    assert (out / "p000-alpha=0.0010000001" / "summary.json").read_bytes() == summary


def test_shard_count_checked_at_every_point_before_anything_runs(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(TINY_YAML)
    out = tmp_path / "out"
    args = ["sweep", str(tmp_path / "tiny.yaml"), "--grid", "realizations=8,2", "--shards", "3", "--out",
            str(out), "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "grid point p001-realizations=2: shards: 3 is more than the 2 realizations" in err
    assert "\n" not in err and not out.exists()
