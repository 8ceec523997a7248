"""The run directory of ``negd reproduce control`` (:mod:`negd.experiments.control`): what an
interrupted run keeps and how ``--resume`` continues it.

Layout (every file read back is checked against its SHA-256, :mod:`negd.sealed`)::

    config.json                     run_kind "control", the experiment's settings, seeds, versions
    arms/<env>/<arm>.json           a finished arm: summary and snapshot rows (sealed JSON)
    arms/<env>/<arm>.checkpoint.pt  an unfinished arm at its last snapshot: the rule's State, the
                                    rows so far, tallies, environment steps, CPU seconds (sealed)
    summary.json                    the finished environments (sealed), then the whole run
    report.md, figures/returns.png

An arm writes its checkpoint at every snapshot and its result when it ends (then the checkpoint is
removed); ``--resume`` reads every finished arm as it is (never recomputed, never replaced), continues
an unfinished one from its checkpoint and runs the others. Every random number of the run is counter
based (:mod:`negd.rng`: seed, realization, step), so a resumed run ends with the numbers of an
uninterrupted one, CPU seconds aside.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, fields
from pathlib import Path

import torch

from negd.experiments.run.restore import checked_state
from negd.runfiles import (
    RECOMPUTE,
    RUN_KINDS,
    CorruptFile,
    load_torch,
    read_json_object,
    run_kind,
    short,
    write_json,
    write_sealed_torch,
)
from negd.sealed import digest_problem
from negd.state import State
from negd.validation import NegdError

__all__ = ["RUN_KIND", "settings_record", "check_resumable", "experiment_from_config", "ArmFiles"]

RUN_KIND = "control"
_CHECKPOINT_KEYS = {"env", "arm", "settings", "state", "rows", "done", "accepted", "ties", "cpu_seconds",
                    "env_steps", "wall_seconds"}


def settings_record(exp) -> dict:
    """The settings that fix a control run's numbers (what a resumed run must share)."""
    return asdict(exp)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _check_kind(run_dir: Path) -> None:
    """NegdError (one line) unless ``run_dir`` was written by ``negd reproduce control``."""
    if not run_dir.is_dir():
        raise NegdError(f"--resume: {str(run_dir)!r} is not a directory")
    kind = run_kind(run_dir)
    if kind != RUN_KIND:
        what = (f"was written by {RUN_KINDS[kind]}" if kind
                else "is not a run directory of negd (no config.json)")
        raise NegdError(f"--resume: {str(run_dir)!r} {what}, not by negd reproduce control")


def check_resumable(run_dir: Path, exp) -> None:
    """NegdError (one line) unless ``run_dir`` is a control run with ``exp``'s settings."""
    run_dir = Path(run_dir)
    _check_kind(run_dir)
    stored = read_json_object(run_dir / "config.json")
    if isinstance(stored.get("envs"), list):  # runs from before EnvSettings.init started from zeros
        stored["envs"] = [{"init": 0.0} | e if isinstance(e, dict) else e for e in stored["envs"]]
    want = _plain(settings_record(exp))
    differ = [(k, stored.get(k), want[k]) for k in want if stored.get(k) != want[k]]
    if differ:
        k, was, now = differ[0]
        if k == "envs" and isinstance(was, list) and len(was) == len(now):  # name the field that differs
            k, was, now = next((f"{b['env']} {f}", a.get(f) if isinstance(a, dict) else a, b[f])
                               for a, b in zip(was, now) if a != b
                               for f in b if not isinstance(a, dict) or a.get(f) != b[f])
        raise NegdError(f"--resume: {str(run_dir)!r} was run with other settings ({k} {short(was)}, not "
                        f"{short(now)}); resume it with its own settings or start a new run")


def _plain(obj):
    """JSON round trip: tuples become lists, so stored and current settings compare equal."""
    return json.loads(json.dumps(obj))


def experiment_from_config(run_dir: Path, experiment_type: type, env_type: type):
    """The experiment recorded in ``run_dir``'s config.json (``negd reproduce control --resume DIR``)."""
    run_dir = Path(run_dir)
    _check_kind(run_dir)
    path = run_dir / "config.json"
    stored = read_json_object(path)
    names = {f.name for f in fields(experiment_type)} - {"envs"}
    env_names = {f.name for f in fields(env_type)}
    try:
        envs = tuple(env_type(**{k: v for k, v in e.items() if k in env_names}) for e in stored["envs"])
        return experiment_type(**{k: stored[k] for k in names if k in stored}, envs=envs)
    except (KeyError, TypeError, AttributeError) as e:
        raise CorruptFile(path, f"does not describe a control run ({type(e).__name__}: {short(str(e))})",
                          "restore it from a copy or start a new run") from None


class ArmFiles:
    """The files of one arm of one environment in a control run directory."""

    def __init__(self, run_dir: Path, env: str, arm: str, settings: dict) -> None:
        folder = Path(run_dir) / "arms" / _slug(env)
        self.env, self.arm, self.settings = env, arm, _plain(settings)
        self.result_path = folder / f"{_slug(arm)}.json"
        self.checkpoint_path = folder / f"{_slug(arm)}.checkpoint.pt"

    # ---------------------------------------------------------------- finished arm
    def load_result(self) -> dict | None:
        """The finished arm's {"summary", "snapshots"}, None when it has not finished."""
        if not self.result_path.exists():
            return None
        data = read_json_object(self.result_path, RECOMPUTE, sealed=True)
        if (data.get("env"), data.get("arm"), data.get("settings")) != (self.env, self.arm, self.settings):
            raise CorruptFile(self.result_path, "belongs to another environment, arm or settings",
                              "remove it to recompute that arm")
        if not isinstance(data.get("summary"), dict) or not isinstance(data.get("snapshots"), list):
            raise CorruptFile(self.result_path, "is not a finished control arm (summary, snapshots)",
                              "remove it to recompute that arm")
        return {"summary": data["summary"], "snapshots": data["snapshots"]}

    def save_result(self, result: dict) -> None:
        write_json(self.result_path, {"env": self.env, "arm": self.arm, "settings": self.settings} | result,
                   seal=True)
        self.checkpoint_path.unlink(missing_ok=True)  # the result holds everything it had

    # ---------------------------------------------------------------- unfinished arm
    def save_checkpoint(self, state: State, rows: list[dict], done: int, accepted: torch.Tensor,
                        ties: torch.Tensor, cpu_seconds: float, env_steps: int, wall_seconds: float) -> None:
        payload = {"env": self.env, "arm": self.arm, "settings": self.settings, "state": state.to_dict(),
                   "rows": _plain(rows), "done": int(done), "accepted": accepted.clone(),
                   "ties": ties.clone(), "cpu_seconds": float(cpu_seconds), "env_steps": int(env_steps),
                   "wall_seconds": float(wall_seconds)}
        write_sealed_torch(self.checkpoint_path, payload)

    def load_checkpoint(self) -> dict | None:
        """The arm's last snapshot (state as a State), None when there is none."""
        path = self.checkpoint_path
        if not path.exists():
            return None
        payload = load_torch(path, "remove it to recompute that arm")
        if not isinstance(payload, dict) or not _CHECKPOINT_KEYS <= set(payload):
            raise CorruptFile(path, "is not a control checkpoint", "remove it to recompute that arm")
        problem = digest_problem(payload)
        if problem is not None:
            raise CorruptFile(path, problem, "remove it to recompute that arm")
        if (payload["env"], payload["arm"], payload["settings"]) != (self.env, self.arm, self.settings):
            raise CorruptFile(path, "belongs to another environment, arm or settings",
                              "remove it to recompute that arm")
        payload["state"] = checked_state(path, self.arm, payload["state"])
        return payload
