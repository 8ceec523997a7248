"""Progress of long commands: one tqdm bar per arm, with rate and time left.

Every long command (``negd reproduce``, ``negd run``, ``negd sweep``) shows the same thing: a bar per
arm, named after the arm, counting that arm's work (realization-steps of neuroevolution, or steps),
with tqdm's rate and estimated time left. Bars go to standard error and are off with
``--no-progress`` and whenever standard output or standard error is not a terminal (a log file, a
pipe, CI): :func:`wanted`.
"""

from __future__ import annotations

import sys

__all__ = ["ArmProgress", "wanted"]


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def wanted(requested: bool) -> bool:
    """Whether to show bars: asked for, and both standard output and standard error are terminals."""
    return bool(requested) and _is_terminal(sys.stdout) and _is_terminal(sys.stderr)


class ArmProgress:
    """One tqdm bar at a time, one per arm (:meth:`start_arm`), or nothing when not :func:`wanted`."""

    def __init__(self, requested: bool, unit: str = "r-step") -> None:
        self.enabled = wanted(requested)
        self.unit = unit
        self.bar = None

    def start_arm(self, label: str, total: int, done: int = 0) -> None:
        """Close the previous arm's bar and open ``label``'s: ``total`` units, ``done`` of them already."""
        self.close()
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, unit=self.unit, unit_scale=True, dynamic_ncols=True,
                            file=sys.stderr, desc=label, smoothing=0.1)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def note(self, text: str) -> None:
        """A short status after the bar (e.g. the latest loss), or nothing."""
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
