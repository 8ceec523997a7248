"""What a run's numbers depend on, recorded so that ``--resume`` never mixes two kinds of numbers.

A resumed run is bit-identical to an uninterrupted one only when it continues with the same
settings and on the same compute path. Two records make that checkable:

* **settings**: every field of the validated configuration (``ExperimentConfig.to_user_dict``,
  so a field added there is covered without a change here), the experiment and scale names and
  every arm. Their SHA-256 (:func:`settings_hash`) is written into config.json and the settings
  themselves into every checkpoint, so an edited config.json (e.g. its seed) is detected and
  the changed field named.
* **compute path**: fused C kernel or torch, the dtypes of parameters and losses, the device,
  the torch and negd versions (:func:`compute_path`). A resume on another path is refused unless
  explicitly allowed (``--allow-path-change``), and an allowed change is appended to
  config.json's ``path_changes``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from negd.experiments.config.schema import TOP_KEYS, Arm, ExperimentConfig, config_from_dict
from negd.runfiles import CorruptFile, read_json_object, short, write_json
from negd.validation import NegdError

__all__ = ["recorded_shards", "settings_of", "settings_hash", "settings_record", "compute_path",
           "differences", "check_flags", "load_run_config", "check_compute_path"]


def settings_of(config: ExperimentConfig, arms: list[Arm]) -> dict:
    """Everything in the configuration that affects the numbers, as plain JSON values."""
    return {"experiment": config.experiment, "scale": config.scale, **config.to_user_dict(),
            "arms": [a.to_json() for a in arms]}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def settings_hash(settings: Mapping, keys: list[str] | None = None) -> str:
    """SHA-256 of ``settings`` (only ``keys`` when given: the keys recorded when the run started,
    so that a configuration field added to negd later does not invalidate older runs)."""
    chosen = settings if keys is None else {k: settings.get(k) for k in keys}
    return hashlib.sha256(_canonical(chosen).encode()).hexdigest()


def settings_record(settings: Mapping) -> dict:
    """The entries of config.json that fingerprint the settings."""
    return {"settings_hash": settings_hash(settings), "settings_keys": sorted(settings)}


def compute_path(*, kernel: bool, params: torch.Tensor, loss: torch.Tensor, device: torch.device,
                 **extra: Any) -> dict:
    """The compute path of a run, from a probe state of its NE rule (``extra``: further entries)."""
    from negd.version import __version__

    return {"kernel": bool(kernel), "param_dtype": str(params.dtype).removeprefix("torch."),
            "loss_dtype": str(loss.dtype).removeprefix("torch."), "device": str(device),
            "torch": torch.__version__, "negd": __version__, **extra}


def differences(recorded: Mapping, current: Mapping, *, common_only: bool = False,
                recorded_only: bool = False) -> list[str]:
    """``key: recorded -> current`` for every top-level key whose value differs (JSON-equal values
    are equal). ``common_only`` ignores keys missing on either side, ``recorded_only`` keys that
    were not recorded (fields that did not exist when an older run directory was written)."""
    if common_only:
        keys = sorted(set(recorded) & set(current))
    elif recorded_only:
        keys = sorted(recorded)
    else:
        keys = sorted(set(recorded) | set(current))
    out = []
    for key in keys:
        before, after = recorded.get(key), current.get(key)
        if _canonical(before) != _canonical(after):
            out.append(f"{key}: {short(before)} -> {short(after)}")
    return out


def check_flags(recorded: Mapping[str, Any], given: Mapping[str, Any], run_dir) -> None:
    """Refuse command-line flags that contradict the resumed run's settings (equal ones are fine).

    ``recorded``: flag -> the run's value; ``given``: flag -> the value given (None = not given).
    """
    conflicts = [f"{flag} {short(value)} (the run has {short(recorded[flag])})"
                 for flag, value in given.items()
                 if value is not None and _canonical(value) != _canonical(recorded[flag])]
    if conflicts:
        raise NegdError(f"--resume: {'; '.join(conflicts)}: a resumed run keeps the settings it was "
                        f"started with; drop these flags, or start a new run instead of --resume {run_dir}")


def load_run_config(run_dir: Path) -> tuple[ExperimentConfig, list[Arm]]:
    """The configuration and arms of an existing run directory (for --resume)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise NegdError(f"--resume: {str(run_dir)!r} is not a directory")
    path = run_dir / "config.json"
    stored = read_json_object(path)
    # Every configuration field (sigma is derived from lambda, steps from t_final).
    keys = [k for k in TOP_KEYS if k not in ("sigma", "steps")]
    user = {k: stored[k] for k in keys if k in stored and stored[k] is not None}
    user.setdefault("twin", "noiseless")  # run directories from before the Langevin twin
    user.setdefault("dtype", "float32")  # run directories from before float64 parameters
    if isinstance(user.get("init"), dict) and user["init"].get("sigma0") is None:
        user["init"] = {k: v for k, v in user["init"].items() if k != "sigma0"}
    names = {k: stored.get(k, "custom") for k in ("experiment", "scale")}
    if not all(isinstance(v, str) for v in names.values()):
        raise CorruptFile(path, f"experiment/scale must be names, got {short(names)}",
                          "restore it or start a new run")
    try:
        config = config_from_dict(user, **names)
        arms = [Arm.from_json(a) for a in stored["arms"]]
    except NegdError as e:
        raise CorruptFile(path, str(e), "restore it from a copy or start a new run") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptFile(path, f"arms are damaged ({type(e).__name__}: {short(str(e))})",
                          "restore it from a copy or start a new run") from None
    if arms != config.arms():
        raise NegdError(f"--resume: the arms in {path} do not follow from its settings")
    recorded, keys = stored.get("settings_hash"), stored.get("settings_keys")
    keys = keys if isinstance(keys, list) and all(isinstance(k, str) for k in keys) else None
    if recorded is not None and recorded != settings_hash(settings_of(config, arms), keys):
        raise NegdError(f"{path}: was edited after the run started (its settings no longer match the hash "
                        f"recorded at the start); restore it, or start a new run")
    return config, arms


# Entries of the compute path that never change the numbers (negd.experiments.shards.inprocess): recorded,
# updated on resume, never a reason to refuse one.
SHARDING_KEYS = ("shards", "engine")


def recorded_shards(run_dir: Path) -> int | None:
    """The shard count recorded in ``run_dir``'s compute path (None: not sharded or not recorded)."""
    path = read_json_object(Path(run_dir) / "config.json").get("compute_path")
    shards = path.get("shards") if isinstance(path, dict) else None
    return shards if isinstance(shards, int) and not isinstance(shards, bool) and shards >= 1 else None


def check_compute_path(run_dir: Path, path: dict, allow_change: bool) -> None:
    config_path = run_dir / "config.json"
    stored = read_json_object(config_path)
    recorded = stored.get("compute_path")
    if not isinstance(recorded, dict):  # run directories from before the compute path was recorded
        recorded = {"kernel": stored["kernel"]} if isinstance(stored.get("kernel"), bool) else {}
    numeric = {k: v for k, v in recorded.items() if k not in SHARDING_KEYS}
    changed = differences(numeric, path, common_only=True)
    if not changed:
        if any(recorded.get(k) != path.get(k) for k in SHARDING_KEYS):  # record how it continues
            stored["compute_path"] = {**numeric, **path}
            write_json(config_path, stored)
        return
    if not allow_change:
        raise NegdError(f"--resume: this run was computed on another path ({'; '.join(changed)}); its "
                        f"numbers would mix two paths: resume it where it ran, or pass --allow-path-change "
                        f"to continue anyway (recorded in config.json)")
    changes = stored.get("path_changes") if isinstance(stored.get("path_changes"), list) else []
    changes.append({"from": recorded, "to": path, "at": _dt.datetime.now().astimezone().isoformat(
        timespec="seconds")})
    stored.update({"path_changes": changes, "compute_path": path, "kernel": path["kernel"]})
    write_json(config_path, stored)
    print(f"negd: continuing on another compute path ({'; '.join(changed)}), recorded in {config_path}",
          file=sys.stderr)
