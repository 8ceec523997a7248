"""Run-directory files: atomic writers and validating readers (JSON and npz), shared by the runner
and the reports.

Writers replace a file atomically (temp file + ``os.replace``): a crash leaves the old or the new
version, never half of one.

Every payload read back is verified against its SHA-256 (negd.sealed), not only parsed.

A run directory may be damaged (a truncated copy, a disk error) or edited by hand (binary
bytes, a list where an object belongs, another arm's file copied in). Every reader here turns
any such file into one :class:`CorruptFile` line that names the file, what is wrong and what to
do, and never quotes more than :data:`MAX_QUOTE` characters of its content. The checkpoint
reader (torch) is :func:`negd.experiments.run.store.load_checkpoint`, built on the same class.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from negd.sealed import DIGEST_KEY, arrays_problem, digest_problem, legacy_note, npz_arrays, read_records
from negd.sealed import seal as seal_payload
from negd.validation import NegdError

__all__ = ["atomic_write_bytes", "write_json", "CorruptFile", "short", "read_json", "read_json_object",
           "load_npz", "load_npz_log", "write_sealed_torch", "load_torch", "MAX_QUOTE", "RESTORE",
           "RECOMPUTE", "RUN_KINDS", "run_kind"]

# Longest piece of a user's value quoted in an error message (a damaged file may hold megabytes).
MAX_QUOTE = 80
RESTORE = "restore it from a copy or start a new run"
RECOMPUTE = "resume the run (--resume DIR) to recompute that arm"


def short(value: Any) -> str:
    """``repr(value)`` cut to MAX_QUOTE characters, for one-line messages."""
    text = " ".join(repr(value).split())
    return text if len(text) <= MAX_QUOTE else text[:MAX_QUOTE] + "...(truncated)"


class CorruptFile(NegdError):
    """A run-directory file that exists but cannot be used; the message names it and what to do."""

    def __init__(self, path: Path, problem: str, advice: str) -> None:
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}; {advice}")


def read_json(path: Path, advice: str = RESTORE) -> Any:
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise NegdError(f"run directory: missing {Path(path).name} in {str(Path(path).parent)!r}") from None
    except IsADirectoryError:
        raise CorruptFile(path, "is a directory, not a JSON file", advice) from None
    except UnicodeDecodeError:
        raise CorruptFile(path, "is not text (not UTF-8)", advice) from None
    except json.JSONDecodeError as e:
        raise CorruptFile(path, f"is not valid JSON ({e.msg} at line {e.lineno})", advice) from None
    except (OSError, RecursionError, ValueError) as e:
        raise CorruptFile(path, f"is unreadable ({type(e).__name__}: {short(str(e))})", advice) from None


def read_json_object(path: Path, advice: str = RESTORE, sealed: bool = False) -> dict:
    """A JSON file that must hold an object (config.json, status.json, summary.json). An object written
    with ``write_json(..., seal=True)`` is checked against its "sha256" (then dropped); ``sealed``: the
    file should have one (a file from before checksums is read with a one-line note)."""
    data = read_json(path, advice)
    if not isinstance(data, dict):
        raise CorruptFile(path, f"must hold a JSON object, got a {type(data).__name__}", advice)
    problem = digest_problem(data)
    if problem == "no checksum":
        if sealed:
            legacy_note(path)
        return data
    if problem is not None:
        raise CorruptFile(path, problem, advice)
    return {k: v for k, v in data.items() if k != DIGEST_KEY}


def load_npz(path: Path, advice: str = RECOMPUTE) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (no pickles); CorruptFile when it is not a readable npz of arrays."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise CorruptFile(path, "is a single .npy array, not an .npz archive", advice)
            arrays = {k: np.asarray(z[k]) for k in z.files}
    except CorruptFile:
        raise
    except FileNotFoundError:
        raise CorruptFile(path, "is missing", advice) from None
    except Exception as e:  # BadZipFile, EOFError, ValueError, OSError, zlib.error: all "unreadable"
        raise CorruptFile(path, f"is unreadable ({type(e).__name__}: {short(str(e))})", advice) from None
    if not arrays:
        raise CorruptFile(path, "holds no arrays", advice)
    if any(a.dtype.kind not in "biuf" for a in arrays.values()):
        raise CorruptFile(path, "holds non-numeric arrays", advice)
    problem = arrays_problem(arrays)  # its SHA-256 (negd.sealed): a flipped bit is never read as data
    if problem == "no checksum":
        legacy_note(path)
    elif problem is not None:
        raise CorruptFile(path, problem, advice)
    arrays.pop(DIGEST_KEY, None)
    if not arrays:
        raise CorruptFile(path, "holds no arrays", advice)
    return arrays


def load_npz_log(path: Path, advice: str = RECOMPUTE) -> dict[str, np.ndarray]:
    """The rows of a snapshot log (negd.sealed records, each an npz of one row with a leading axis of 1)
    concatenated; a torn last record is dropped; CorruptFile for a damaged record or no record."""
    try:
        records, problem = read_records(path)
    except OSError as e:
        raise CorruptFile(path, f"is unreadable ({type(e).__name__})", advice) from None
    if problem not in (None, "torn"):
        raise CorruptFile(path, problem, advice)
    if not records:
        raise CorruptFile(path, "holds no complete record", advice)
    try:
        rows = [npz_arrays(r) for r in records]
        arrays = {k: np.concatenate([row[k] for row in rows]) for k in rows[0] if k != "trajectory_ids"}
    except Exception as e:  # noqa: BLE001 - a record that passed its checksum but is no row negd wrote
        raise CorruptFile(path, f"holds a record that is not a snapshot row ({type(e).__name__})",
                          advice) from None
    if "trajectory_ids" in rows[0]:
        arrays["trajectory_ids"] = rows[0]["trajectory_ids"]
    return arrays


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """``data`` into ``path``: readers see the old or the new file, never half of it. ``durable``: synced
    to disk first (survives a power cut); files that a validating loader may simply reject (shard
    checkpoints) skip that, it costs milliseconds per file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a temp file behind, keep the old version.
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_sealed_torch(path: Path, payload: dict, durable: bool = True) -> None:
    """``payload`` (a dict) with its SHA-256 (negd.sealed: torch's zip reader checks no CRC), saved by
    ``torch.save`` atomically; ``durable=False`` skips the fsync (a file that is cheap to recompute)."""
    buffer = io.BytesIO()
    torch.save(seal_payload(payload), buffer)
    atomic_write_bytes(path, buffer.getvalue(), durable=durable)


def load_torch(path: Path, advice: str = RECOMPUTE) -> Any:
    """``torch.load`` of ``path`` (``weights_only``: no code runs), a missing or unreadable file one
    :class:`CorruptFile` line; the caller checks its structure and digest."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CorruptFile(path, "is missing", advice) from None
    except Exception as e:  # PytorchStreamReader errors, EOFError, UnpicklingError, ...
        raise CorruptFile(path, f"is unreadable ({type(e).__name__}: {short(str(e))})", advice) from None


def write_json(path: Path, obj: Any, seal: bool = False) -> None:
    """``obj`` as JSON, atomically; ``seal``: an object with its SHA-256 under "sha256" (negd.sealed),
    for results that cannot be recomputed and are read back (read_json_object checks it)."""
    if seal:
        obj = seal_payload(json.loads(json.dumps(obj, allow_nan=True)))  # the digest of what is read back
    atomic_write_bytes(path, (json.dumps(obj, indent=2, allow_nan=True) + "\n").encode())


# What wrote a directory: recorded as "run_kind" in its config.json (a sweep: in sweep-plan.json), so
# that every command writing into an existing directory can tell what is there (issue 19, class 1).
RUN_KINDS = {"experiment": "negd run / negd reproduce shallow|deep|finite-beta",
             "classification": "negd reproduce digits|mnist1d", "variants": "negd reproduce variants",
             "control": "negd reproduce control", "sweep": "negd sweep"}


def run_kind(directory: Path) -> str | None:
    """The kind (a key of RUN_KINDS) of the run that wrote ``directory``, None when none did. Directories
    written before the kind was recorded are recognised by their config.json's fields."""
    directory = Path(directory)
    if (directory / "sweep-plan.json").is_file() or (directory / "sweep.json").is_file():
        return "sweep"
    if not (directory / "config.json").is_file():
        return None
    config = read_json_object(directory / "config.json")
    kind = config.get("run_kind")
    if kind in RUN_KINDS:
        return kind
    if "arms" in config:  # the arms of negd run / reproduce (hand-damaged ones are named by their readers)
        return "experiment"
    if {"task", "spec", "check_factor"} <= set(config):
        return "classification"
    if {"seeds", "batch_size", "spec"} <= set(config):
        return "variants"
    if {"envs", "seeds", "eval_episodes"} <= set(config):
        return "control"
    return None
