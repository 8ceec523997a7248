"""The built-in logger: one JSON object per event, one line each (JSON Lines), flushed per event.

Each line: ``{"source", "step", "metrics": {name: number}, "tags": {...}, "time"}``; non-finite
numbers are written as the strings "nan", "inf", "-inf" (JSON has no such numbers).
:func:`read_jsonl` reads a file back (a torn last line, from a killed process, is skipped).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

__all__ = ["JSONLLogger", "read_jsonl"]


def _finite_or_text(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


class JSONLLogger:
    """Append every event to ``path`` (created with its folder; ``append=False`` starts it empty)."""

    def __init__(self, path: str | Path, *, append: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def __call__(self, event) -> None:
        record = event.to_dict()
        record["metrics"] = {k: _finite_or_text(float(v)) for k, v in record["metrics"].items()}
        record["time"] = time.time()
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JSONLLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSONL log (metrics as floats again; a torn last line skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        record["metrics"] = {k: float(v) for k, v in record["metrics"].items()}
        out.append(record)
    return out
