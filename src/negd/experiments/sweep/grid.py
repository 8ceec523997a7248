"""Sweeps: one experiment per point of a grid over configuration keys (a correspondence map).

``negd sweep CONFIG --grid "sigma=a,b,c" --grid "beta=inf,1000,100"`` (or a ``grid:`` section in the
file, ``{key: [values]}``; a --grid of the same key replaces it) runs the configuration at every
point of the grid's Cartesian product, each into its own run directory under the sweep directory
(``p<index>-<key>=<value>...``), then writes the combined report (negd.experiments.sweep.report).

Each point is the file's configuration with the point's values put in (sigma replaces lambda and
vice versa, steps replaces t_final and vice versa; twin_realizations is dropped at beta = inf points
when the file leaves the twin to its default, noiseless GD there), validated like a file: every
point is checked before anything runs. A rerun of the same sweep into the same directory skips the
points that are complete, resumes the interrupted ones and runs the rest; a sweep directory holding
another grid or another configuration is refused, so nothing already written is lost.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negd.experiments.config.file import read_config_file
from negd.experiments.config.schema import RUN_OPTION_KEYS, TWINS, ExperimentConfig, config_from_dict
from negd.experiments.run.provenance import settings_hash
from negd.runfiles import read_json_object, write_json
from negd.validation import NegdError

__all__ = ["GRID_KEYS", "parse_grid_option", "checked_grid", "SweepPoint", "plan_sweep", "run_sweep",
           "read_sweep_file"]

INTEGER_KEYS = ("realizations", "twin_realizations", "twin_proposals", "steps", "seed", "n_snapshots")
# "twin" is the one key whose values are names (TWINS): a map of one grid under several twins, e.g.
# twin=noiseless,mean-field; the fields of a twin (twin_realizations, twin_proposals) that the file
# gives are dropped at the points whose twin does not use them.
GRID_KEYS = ("sigma", "lambda", "beta", "alpha", "t_final", *INTEGER_KEYS, "twin")
# Keys that replace another one of the file (a configuration gives one of each pair).
_REPLACES = {"sigma": "lambda", "lambda": "sigma", "steps": "t_final", "t_final": "steps"}
MAX_POINTS = 10_000
PLAN_FILE = "sweep-plan.json"
SWEEP_KIND = "sweep"  # the run kind recorded in the plan (negd.runfiles.run_kind)


def _value(key: str, text: Any) -> float | int:
    """One grid value: a number ("inf" for beta), an exact integer for INTEGER_KEYS (never through a
    float: seeds above 2^53 stay distinct)."""
    where = f"grid {key}"
    if key == "twin":
        name = text.strip() if isinstance(text, str) else text
        if name not in TWINS:
            raise NegdError(f"{where}: values must be twin names ({', '.join(TWINS)}), got {text!r}")
        return name
    if key == "beta" and isinstance(text, str) and text.strip().lower() in ("inf", "infinity", ".inf"):
        return math.inf
    if key in INTEGER_KEYS and not isinstance(text, bool):
        exact = _exact_integer(text)
        if exact is not None:
            return exact
    try:
        value = float(text.strip()) if isinstance(text, str) else float(text)
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if isinstance(text, bool) or not math.isfinite(value) and not (key == "beta" and value == math.inf):
        raise NegdError(f"{where}: values must be numbers{' or inf' if key == 'beta' else ''}, got {text!r}")
    if key in INTEGER_KEYS:
        raise NegdError(f"{where}: values must be integers, got {text!r}")
    return value


def _exact_integer(text: Any) -> int | None:
    """``text`` as the integer it denotes exactly ("12", "1e3", 7, 8.0), None when it denotes none."""
    if isinstance(text, int):
        return text
    if isinstance(text, float):
        return int(text) if text.is_integer() else None
    if not isinstance(text, str):
        return None
    try:
        number = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        return None
    if not number.is_finite() or number != number.to_integral_value() or abs(number.adjusted()) > 100:
        return None
    return int(number)


def exact_text(value: float | int) -> str:
    """A grid value written exactly: an integer's digits, a float's shortest round-trip repr, "inf", a
    twin's name."""
    if isinstance(value, int | str):
        return str(value)
    return "inf" if value == math.inf else repr(float(value))


def _key(key: Any) -> str:
    if key not in GRID_KEYS:
        raise NegdError(f"grid: unknown key {key!r}; a grid runs over the keys {', '.join(GRID_KEYS)}")
    return key


def parse_grid_option(text: str) -> tuple[str, list]:
    """``"key=a,b,c"`` -> (key, [a, b, c]) (one --grid option)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise NegdError(f"--grid: must be KEY=V1,V2,... (e.g. sigma=1e-3,2e-3), got {text!r}")
    items = [v for v in values.split(",")]
    if not values.strip() or any(not v.strip() for v in items):
        raise NegdError(f"--grid: {key}: give at least one value and no empty ones, got {text!r}")
    return _key(key), [_value(key, v) for v in items]


def checked_grid(file_grid: Any, options: list[str]) -> dict[str, list]:
    """The grid of a sweep: the file's ``grid`` section, each --grid option replacing its key."""
    grid: dict[str, list] = {}
    if file_grid is not None:
        if not isinstance(file_grid, dict):
            raise NegdError(f"grid: must be a mapping of keys to lists of values, got {file_grid!r:.80}")
        for key, values in file_grid.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                raise NegdError(f"grid: {key}: give at least one value")
            grid[_key(key)] = [_value(key, v) for v in values]
    for text in options:
        key, values = parse_grid_option(text)
        grid[key] = values
    if not grid:
        raise NegdError("grid: empty; give --grid KEY=V1,V2,... or a grid section in the configuration")
    for a, b in (("sigma", "lambda"), ("steps", "t_final")):
        if a in grid and b in grid:
            raise NegdError(f"grid: give either {a} or {b}, not both (one follows from the other)")
    points = math.prod(len(v) for v in grid.values())
    if points > MAX_POINTS:
        raise NegdError(f"grid: {points} points; at most {MAX_POINTS}")
    return grid


@dataclass(frozen=True)
class SweepPoint:
    index: int
    values: dict[str, float | int | str]
    config: ExperimentConfig
    name: str  # its run directory under the sweep directory


def _label(value: float | int | str) -> str:
    """A value in a point's directory name: 6 digits where they are exact, else the exact repr."""
    if isinstance(value, str) or value == math.inf or isinstance(value, int):
        return exact_text(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def plan_sweep(base: dict, grid: dict[str, list]) -> list[SweepPoint]:
    """Every point of the grid as a validated configuration (all checked before any runs)."""
    points = []
    for index, combo in enumerate(itertools.product(*grid.values())):
        values = dict(zip(grid, combo))
        data = {k: v for k, v in base.items() if k not in values and _REPLACES.get(k) not in values}
        for key, value in values.items():
            data.pop(_REPLACES.get(key, ""), None)
            data[key] = "inf" if value == math.inf else value
        if values.get("beta") == math.inf and "twin" not in data:
            # the default twin at beta = inf is noiseless GD: twin_realizations is for finite-beta points
            data.pop("twin_realizations", None)
        if "twin" in values:  # the file's fields of other twins do not apply at this point
            if values["twin"] == "noiseless" and "twin_realizations" not in values:
                data.pop("twin_realizations", None)
            if values["twin"] != "mean-field" and "twin_proposals" not in values:
                data.pop("twin_proposals", None)
        name = f"p{index:03d}-" + "_".join(f"{k}={_label(v)}" for k, v in values.items())
        try:
            config = config_from_dict(data)
        except NegdError as e:
            raise NegdError(f"grid point {name}: {e}") from None
        points.append(SweepPoint(index, values, config, name))
    return points


def read_sweep_file(path: Path) -> tuple[dict, dict]:
    """A configuration file's data without its run options, and those options."""
    data = read_config_file(Path(path))
    if not isinstance(data, dict):
        raise NegdError(f"config: must be a mapping of keys to values, got {data!r:.80}")
    options = {k: data[k] for k in RUN_OPTION_KEYS if k in data}
    return {k: v for k, v in data.items() if k not in RUN_OPTION_KEYS}, options


def _plan(base: dict, grid: dict) -> dict:
    """What identifies a sweep: its configuration's hash and its grid's exact values."""
    return {"run_kind": SWEEP_KIND, "base_hash": settings_hash(base),
            "grid_exact": {k: [exact_text(v) for v in vs] for k, vs in grid.items()}}


def _same_sweep(sweep_dir: Path, stored: dict, base: dict, grid: dict) -> bool:
    plan = _plan(base, grid)
    if "grid_exact" in stored:
        return all(stored.get(k) == plan[k] for k in ("base_hash", "grid_exact"))
    # A sweep directory written before exact values (6-digit labels): the labels must match, every
    # point directory there must be one of this grid's, and each is then checked against its point's
    # exact configuration (_check_points).
    legacy = {k: [f"{v:g}" if v != math.inf else "inf" for v in vs] for k, vs in grid.items()}
    names = {p.name for p in plan_sweep(base, grid)}
    points_there = {p.name for p in sweep_dir.iterdir() if p.is_dir() and p.name.startswith("p")}
    return stored.get("base_hash") == plan["base_hash"] and stored.get("grid") == legacy \
        and points_there <= names


def _check_claim(sweep_dir: Path, base: dict, grid: dict) -> None:
    """NegdError unless ``sweep_dir`` is new, empty or holds this very sweep (never mix two sweeps)."""
    path = sweep_dir / PLAN_FILE
    if path.exists():
        if not _same_sweep(sweep_dir, read_json_object(path), base, grid):
            raise NegdError(f"--out: {str(sweep_dir)!r} holds another sweep (other grid or configuration); "
                            f"choose another directory")
        return
    if sweep_dir.exists() and (not sweep_dir.is_dir() or any(sweep_dir.iterdir())):
        raise NegdError(f"--out: {str(sweep_dir)!r} exists, is not empty and is not a sweep directory")


def _claim(sweep_dir: Path, base: dict, grid: dict) -> None:
    """Write the plan, or check that the directory holds this very sweep."""
    _check_claim(sweep_dir, base, grid)
    path = sweep_dir / PLAN_FILE
    # A new sweep, or a legacy plan that passed: from now on the exact values identify it.
    if not path.exists() or "grid_exact" not in read_json_object(path):
        created = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        write_json(path, _plan(base, grid) | {"created": created})


def _check_points(points: list[SweepPoint], sweep_dir: Path) -> None:
    """Every point's existing run directory holds a run of exactly that point's settings (NegdError
    otherwise, before anything runs): a point is never skipped or resumed on another point's numbers."""
    from negd.experiments.run.provenance import load_run_config, settings_of

    for point in points:
        run_dir = sweep_dir / point.name
        if not (run_dir / "config.json").exists():
            continue
        try:
            config, arms = load_run_config(run_dir)
        except NegdError as e:
            raise NegdError(f"grid point {point.name}: {e}") from None
        wanted = settings_of(point.config, point.config.arms())
        if settings_hash(settings_of(config, arms)) != settings_hash(wanted):
            values = ", ".join(f"{k}={exact_text(v)}" for k, v in point.values.items())
            raise NegdError(f"grid point {point.name}: {run_dir} holds a run of other settings than the "
                            f"point's ({values}); choose another --out")


def _point_state(run_dir: Path) -> str:
    """"new" (nothing there), "complete" (with its report) or "resume"."""
    if not (run_dir / "config.json").exists():
        return "new"
    try:
        status = read_json_object(run_dir / "status.json")
    except NegdError:
        return "resume"
    done = status.get("state") == "complete" and status.get("report") == "written"
    return "complete" if done and (run_dir / "summary.json").exists() else "resume"


def run_sweep(base: dict, grid: dict, sweep_dir: Path, *, progress: bool = True, shards: int | None = None,
              ray: str | None = None, log=print) -> list[tuple[SweepPoint, str]]:
    """Run (or continue) every point into ``sweep_dir``; returns (point, run state) per point."""
    from negd.experiments.shards.inprocess import check_shards

    points = plan_sweep(base, grid)
    for point in points:  # every point's shard count before anything runs or is written
        try:
            check_shards(shards, point.config.arms())
        except NegdError as e:
            raise NegdError(f"grid point {point.name}: {e}") from None
    _check_claim(sweep_dir, base, grid)
    _check_points(points, sweep_dir)
    kwargs = {k: v for k, v in (("shards", shards), ("ray", ray)) if v is not None}
    cluster = None
    if ray is not None:  # one Ray session for the whole sweep (each run then uses it as it is)
        from negd.experiments.shards.on_ray import RayShards

        cluster = RayShards.connect(ray, points[0].config)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        _claim(sweep_dir, base, grid)
        return _run_points(points, sweep_dir, progress, kwargs, log)
    finally:
        if cluster is not None:
            cluster.close()


def _run_points(points: list[SweepPoint], sweep_dir: Path, progress: bool, kwargs: dict,
                log) -> list[tuple[SweepPoint, str]]:
    from negd.experiments.run.runner import resume_experiment, run_experiment

    states = []
    for point in points:
        run_dir = sweep_dir / point.name
        state = _point_state(run_dir)
        if state == "complete":
            log(f"sweep: {point.name}: complete, skipped")
            states.append((point, "complete"))
            continue
        log(f"sweep: {point.name}: {'resuming' if state == 'resume' else 'running'} "
            f"({len(states) + 1}/{len(points)})")
        if state == "resume":
            result = resume_experiment(run_dir, progress=progress, **kwargs)
        else:
            result = run_experiment(point.config, run_dir, progress=progress, **kwargs)
        states.append((point, result.state))
        if result.state == "interrupted":
            break
    return states
