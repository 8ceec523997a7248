"""Read a configuration file (YAML or TOML) into plain data, with bounded work.

A configuration is a few dozen values; a file that is not (binary bytes, an empty file, a YAML
"billion laughs" whose aliases expand 455 bytes into billions of values) is refused with one
:class:`NegdError` line before anything else looks at it:

* at most :data:`MAX_FILE_BYTES` bytes, UTF-8 text, not empty;
* YAML through ``yaml.SafeLoader`` (no objects), then at most :data:`MAX_VALUES` values once
  every alias is expanded (counted on the shared structure in linear time, never expanded);
* parser errors, including deep nesting, become one line.

Validation of the values themselves is :func:`negd.experiments.config.schema.config_from_dict`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from negd.validation import NegdError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_config_file", "expanded_size", "MAX_FILE_BYTES", "MAX_VALUES", "MAX_MESSAGE"]

MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 10_000
# Longest error message about a configuration (a value quoted in it is cut).
MAX_MESSAGE = 400


def expanded_size(data: Any, limit: int = MAX_VALUES) -> int:
    """Number of values in ``data`` with every shared (aliased) part counted once per use; stops
    counting above ``limit``. Memoized per object, so a YAML bomb costs its size, not its expansion."""
    memo: dict[int, int] = {}

    def size(obj: Any, depth: int) -> int:
        if depth > 100:
            return limit + 1
        if isinstance(obj, dict | list):
            key = id(obj)
            if key not in memo:
                memo[key] = limit + 1  # a cycle (a recursive alias) counts as too large
                items = list(obj.items()) if isinstance(obj, dict) else [(None, v) for v in obj]
                total = 1
                for k, v in items:
                    total += (0 if k is None else size(k, depth + 1)) + size(v, depth + 1)
                    if total > limit:
                        break
                memo[key] = total
            return memo[key]
        return 1

    return size(data, 0)


def _text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise NegdError(f"config: {path.name} is {size} bytes; a configuration is at most "
                            f"{MAX_FILE_BYTES} bytes")
        raw = path.read_bytes()
    except OSError as e:
        raise NegdError(f"config: cannot read {path.name} ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NegdError(f"config: {path.name} is not UTF-8 text (byte {e.start}); give a YAML or TOML "
                        f"text file") from None
    if "\x00" in text:
        raise NegdError(f"config: {path.name} is binary, not a YAML or TOML text file")
    return text


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "...(truncated)"


def read_config_file(path: Path) -> Any:
    """The data of a .yaml/.yml/.toml file, refused with one line when it is unusable (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise NegdError(f"config: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise NegdError(f"config: file must end in .yaml, .yml or .toml, got {path.name!r}")
    text = _text(path)
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise NegdError(f"config: {path.name} is not valid TOML: {_one_line(e)}") from None
        except RecursionError:
            raise NegdError(f"config: {path.name} is nested too deeply") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise NegdError(f"config: {path.name} is not valid YAML: {_one_line(e)}") from None
        except RecursionError:
            raise NegdError(f"config: {path.name} is nested too deeply") from None
        except (ValueError, OverflowError, TypeError) as e:  # e.g. an impossible date
            raise NegdError(f"config: {path.name} holds a value YAML cannot read: {_one_line(e)}") from None
    if data is None or data == {}:
        raise NegdError(f"config: {path.name} is empty; give at least one setting (docs/experiments.md)")
    if expanded_size(data) > MAX_VALUES:
        raise NegdError(f"config: {path.name} holds more than {MAX_VALUES} values once YAML aliases are "
                        f"expanded (an alias bomb?); a configuration has a few dozen")
    return data
