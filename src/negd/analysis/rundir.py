"""Read a run directory (format: docs/experiments.md, "run-directory contract"), tolerating
interrupted runs: missing arms, arms with fewer snapshots than planned, missing status.json.

Runs with a Langevin twin (config ``twin = "langevin"``) also hold ``gd_param_var`` [S, N],
``gd_loss_se`` and ``gd_loss_of_mean`` [S]; runs without them (noiseless twin, or written before
the Langevin twin existed) get ``gd_loss_se`` = 0 and ``gd_loss_of_mean`` = ``gd_loss``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from negd.runfiles import RECOMPUTE, CorruptFile, load_npz, load_npz_log, read_json_object, short
from negd.validation import NegdError

__all__ = ["ArmData", "RunData", "load_run", "to_float", "ENSEMBLE_TWINS", "NOISY_TWINS", "TWIN_LABELS",
           "check_report_keeps_results"]

# Twins that are ensembles (their snapshots hold the mean, variance and mean loss of R_L runs):
# Langevin (Whitelam et al.'s finite-beta limit) and the moment-matched Langevin of
# negd.rules.MomentMatchedLangevin, which carry neuroevolution's noise (NOISY_TWINS), and the mean-field
# twin (negd.twins.mean_field.MeanFieldTwin: NE's expected step E[dx | x] from M proposals, no gradient,
# any loss), whose realizations differ only by the estimation noise of that step, O(1/M): an ensemble
# of them measures that noise, which the floor of Delta then removes (one run would bias Delta_c by it).
# "noiseless" is one gradient-descent run.
ENSEMBLE_TWINS = ("langevin", "matched", "mean-field")
NOISY_TWINS = ("langevin", "matched")
TWIN_LABELS = {"noiseless": "gradient descent", "langevin": "Langevin ensemble mean",
               "matched": "moment-matched Langevin ensemble mean",
               "mean-field": "mean-field twin ensemble mean"}

# Arrays every snapshots.npz must hold (the contract); others are optional extras.
REQUIRED_ARRAYS = (
    "t",
    "ne_step",
    "gd_step",
    "ne_loss_mean",
    "ne_loss_se",
    "loss_of_mean",
    "gd_loss",
    "acceptance",
    "acceptance_se",
    "param_mean",
    "param_var",
    "gd_params",
)
# Scalar-per-snapshot arrays that are filled with NaN when absent (e.g. regime not computed).
OPTIONAL_SCALARS = (
    "grad_norm",
    "trace_hessian",
    "z",
    "c",
    "acceptance_predicted",
    "drift_factor",
    "wall_seconds",
    "c_se",
    "acceptance_predicted_se",
    "drift_factor_se",
    "twin_grad_norm",
    "delta_corrected_se_covariance",
    "tie_fraction",
    "loss_error",
    "decision_risk",
    "quantization",
)


def to_float(value) -> float:
    """Config numbers, where beta may be the string "inf"; None -> NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, str):
        return float(value.strip().lower().replace("infinity", "inf"))
    return float(value)


def _count(value) -> int | None:
    """A non-negative integer from a config.json field (None when it is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) or value < 0:
        return None
    return int(value)


@dataclass
class ArmData:
    """One arm: its configuration entry and the snapshot arrays written so far (None if none)."""

    index: int
    label: str
    sigma: float
    lam: float
    t_final: float
    realizations: int
    ne_steps: int | None
    arrays: dict[str, np.ndarray] | None
    problem: str | None = None  # why arrays are missing or unusable
    twin: str = "noiseless"  # "noiseless" (one GD run) or one of ENSEMBLE_TWINS (gd_* are its mean)
    twin_realizations: int = 1

    @property
    def n_snapshots(self) -> int:
        return 0 if self.arrays is None else int(self.arrays["t"].shape[0])

    @property
    def complete(self) -> bool:
        """Reached its planned final time (up to rounding)."""
        if self.n_snapshots == 0:
            return False
        return bool(self.arrays["t"][-1] >= self.t_final * (1 - 1e-9))


@dataclass
class RunData:
    path: Path
    config: dict
    status: dict
    arms: list[ArmData] = field(default_factory=list)

    @property
    def state(self) -> str:
        return str(self.status.get("state", "unknown"))

    @property
    def beta(self) -> float:
        return to_float(self.config.get("beta"))

    @property
    def alpha(self) -> float:
        return to_float(self.config.get("alpha"))

    @property
    def twin(self) -> str:
        """"noiseless", "mean-field", "langevin" or "matched" (runs written before the field existed:
        noiseless)."""
        return str(self.config.get("twin") or "noiseless")

    @property
    def available_arms(self) -> list[ArmData]:
        return [a for a in self.arms if a.n_snapshots > 0]


def _load_json(path: Path, required: bool) -> dict:
    if not path.exists():
        if required:
            raise NegdError(f"run_dir: {path.parent} is not a run directory ({path.name} is missing)")
        return {}
    try:
        return read_json_object(path)
    except NegdError:
        if required:
            raise
        return {}


def _field(path: Path, name: str, value, convert, allow_missing: bool = False):
    """``convert(value)``, or one CorruptFile line naming the field of ``path`` (e.g. a string
    where a number belongs in a hand-edited config.json)."""
    if value is None and allow_missing:
        return None
    try:
        result = convert(value)
    except (TypeError, ValueError, OverflowError):
        result = None
    if result is None:
        raise CorruptFile(path, f"{name} = {short(value)} is not a valid value",
                          "restore the file from a copy or start a new run")
    return result


def _load_arm(run_dir: Path, index: int, entry: dict, config: dict) -> ArmData:
    where = run_dir / "config.json"
    if not isinstance(entry, dict):
        raise CorruptFile(where, f"arms[{index}] must be an object, got {short(entry)}",
                          "restore the file from a copy or start a new run")
    arm = ArmData(
        index=index,
        label=str(entry.get("label", f"arm {index}")),
        sigma=_field(where, f"arms[{index}].sigma", entry.get("sigma"), to_float),
        lam=_field(where, f"arms[{index}].lambda", entry.get("lambda", config.get("lambda")), to_float),
        t_final=_field(where, f"arms[{index}].t_final", entry.get("t_final", config.get("t_final")),
                       to_float),
        realizations=_field(where, f"arms[{index}].realizations",
                            entry.get("realizations", config.get("realizations", 0)), _count),
        ne_steps=_field(where, f"arms[{index}].ne_steps", entry.get("ne_steps"), _count, allow_missing=True),
        arrays=None,
    )
    if str(config.get("twin") or "noiseless") in ENSEMBLE_TWINS:
        arm.twin = str(config["twin"])
        arm.twin_realizations = _field(where, "twin_realizations",
                                       config.get("twin_realizations") or arm.realizations, _count)
    folder = run_dir / "arms" / str(index)
    # A complete arm's snapshots.npz, else the snapshot log of an arm still running or interrupted.
    path, log = folder / "snapshots.npz", folder / "snapshots.log"
    if not path.exists() and not log.exists():
        arm.problem = "not started (no snapshots.npz)"
        return arm
    try:
        arrays = load_npz(path) if path.exists() else load_npz_log(log)
    except CorruptFile as exc:  # a truncated file must not stop the report of the other arms
        arm.problem = f"{exc.problem}; {RECOMPUTE}"
        return arm
    missing = [k for k in REQUIRED_ARRAYS if k not in arrays]
    if missing:
        arm.problem = f"snapshots.npz lacks {', '.join(missing)}"
        return arm
    n_snap = arrays["t"].shape[0]
    lengths = {k: arrays[k].shape[0] for k in REQUIRED_ARRAYS}
    if any(v != n_snap for v in lengths.values()) or n_snap == 0:
        arm.problem = f"snapshots.npz arrays have inconsistent lengths {lengths}"
        return arm
    for key in OPTIONAL_SCALARS:
        if key not in arrays:
            arrays[key] = np.full(n_snap, np.nan)
    if arm.twin in ENSEMBLE_TWINS and "gd_param_var" not in arrays:
        arm.problem = f"snapshots.npz of a {arm.twin} twin (an ensemble) lacks gd_param_var"
        return arm
    # A noiseless twin: exact loss (SE 0), and the "averaged twin" is the twin itself.
    arrays.setdefault("gd_loss_se", np.zeros(n_snap))
    arrays.setdefault("gd_loss_of_mean", np.asarray(arrays["gd_loss"]))
    arrays = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    arm.arrays = arrays
    return arm


def load_run(run_dir: Path) -> RunData:
    """Load ``config.json``, ``status.json`` and every arm's ``snapshots.npz`` that exists."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NegdError(f"run_dir: {run_dir} is not a directory")
    config = _load_json(run_dir / "config.json", required=True)
    status = _load_json(run_dir / "status.json", required=False)
    for key in ("beta", "alpha"):
        _field(run_dir / "config.json", key, config.get(key), to_float, allow_missing=True)
    if config.get("arms") is not None and not isinstance(config["arms"], list):
        raise CorruptFile(run_dir / "config.json", f"arms must be a list, got {short(config['arms'])}",
                          "restore the file from a copy or start a new run")
    entries = config.get("arms") or [
        {
            "label": "sigma",
            "sigma": config.get("sigma"),
            "lambda": config.get("lambda"),
            "t_final": config.get("t_final"),
        }
    ]
    run = RunData(path=run_dir, config=config, status=status)
    run.arms = [_load_arm(run_dir, i, e, config) for i, e in enumerate(entries)]
    return run


def check_report_keeps_results(run_dir: Path) -> None:
    """NegdError (one line) when rebuilding the report of ``run_dir`` would replace its report with less:
    an arm with fewer readable snapshots than the existing summary.json was built from (damaged or
    missing files, e.g. a copy of the reports without arms/), or a damaged arm."""
    run_dir = Path(run_dir)
    if not (run_dir / "report.md").exists() and not (run_dir / "summary.json").exists():
        return
    run = load_run(run_dir)
    built_from = {}
    summary = _load_json(run_dir / "summary.json", required=False)
    for entry in summary.get("arms") or []:
        if isinstance(entry, dict) and isinstance(entry.get("index"), int):
            built_from[entry["index"]] = _count(entry.get("snapshots")) or 0
    for arm in run.arms:
        damaged = arm.problem is not None and not arm.problem.startswith("not started")
        if damaged or arm.n_snapshots < built_from.get(arm.index, 0):
            had = built_from.get(arm.index)
            was = f"the existing report holds {had} snapshots of it, " if had else ""
            raise NegdError(f"report: arm {arm.index} ({arm.label}) of {str(run_dir)!r}: {was}"
                            f"{arm.problem or f'{arm.n_snapshots} readable'}; the existing report.md and "
                            "summary.json are kept")
