"""Command line: ``negd reproduce``, ``negd run``, ``negd report``, ``negd bench``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("negd: no commands yet", file=sys.stderr)
    return 2
