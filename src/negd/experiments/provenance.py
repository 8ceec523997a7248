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

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

from negd.analysis.runfiles import short
from negd.validation import NegdError

__all__ = ["settings_of", "settings_hash", "compute_path", "differences", "check_flags"]


def settings_of(config, arms) -> dict:
    """Everything in the configuration that affects the numbers, as plain JSON values."""
    return {"experiment": config.experiment, "scale": config.scale, **config.to_user_dict(),
            "arms": [a.to_json() for a in arms]}


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def settings_hash(settings: Mapping) -> str:
    return hashlib.sha256(_canonical(settings).encode()).hexdigest()


def compute_path(*, kernel: bool, params: torch.Tensor, loss: torch.Tensor, device: torch.device,
                 **extra: Any) -> dict:
    """The compute path of a run, from a probe state of its NE rule (``extra``: further entries)."""
    import negd

    return {"kernel": bool(kernel), "param_dtype": str(params.dtype).removeprefix("torch."),
            "loss_dtype": str(loss.dtype).removeprefix("torch."), "device": str(device),
            "torch": torch.__version__, "negd": negd.__version__, **extra}


def differences(recorded: Mapping, current: Mapping, *, common_only: bool = False) -> list[str]:
    """``key: recorded -> current`` for every top-level key whose value differs (JSON-equal values
    are equal); ``common_only`` ignores keys missing on either side (older run directories)."""
    keys = sorted(set(recorded) & set(current)) if common_only else sorted(set(recorded) | set(current))
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
