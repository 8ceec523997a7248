"""Logging hooks: one callback protocol for ``negd.advance``, the experiment runner and the optimizers.

A callback is any callable taking one :class:`Event`: where it comes from (``source``: "advance",
"runner" or "optim"), the step it describes, its scalar ``metrics`` and ``tags`` naming what they
belong to (the runner's arm). Loggers are callbacks with a ``close()``:

* :class:`JSONLLogger` (built in): one JSON object per event, one line each;
* :class:`~negd.callbacks.tensorboard.TensorBoardLogger`, :class:`~negd.callbacks.mlflow.MLflowLogger`,
  :class:`~negd.callbacks.wandb.WandbLogger`: optional extras (``pip install 'negd[tensorboard]'``,
  ``'negd[mlflow]'``, ``'negd[wandb]'``), their package imported only when one is constructed.

Where events come from:

* ``negd.advance(rule, state, loss_fn, steps, callbacks=..., log_every=k)``: every k steps (default:
  20 events per call), ``loss_mean``, ``loss_min``, ``loss_max`` and ``acceptance`` (accepted moves per
  proposal since the previous event) of the ensemble; the steps run in chunks of k, which gives the
  same numbers as one call (counter-based random numbers, :mod:`negd.rng`);
* ``run_experiment(..., callbacks=...)`` / ``resume_experiment``: every snapshot of every arm, its
  scalar numbers (``ne_loss_mean``, ``gd_loss``, ``delta``, ``delta_corrected``, ``acceptance``, ...)
  tagged with the arm's index and label;
* ``negd.optim.Neuroevolution(..., callbacks=..., log_every=k)`` (and ``AdaptiveMC``): every k steps,
  ``loss``, ``acceptance_rate`` and ``accepted``.

A callback that raises stops the computation like any other error (what was computed before is
kept as usual); callbacks are called in the order given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from negd.callbacks.jsonl import JSONLLogger
from negd.validation import NegdError

__all__ = ["Event", "Callback", "Logger", "JSONLLogger", "as_callbacks", "emit", "scalar_metrics",
           "events_every", "require", "SOURCES"]

SOURCES = ("advance", "runner", "optim")


@dataclass(frozen=True)
class Event:
    """What a callback receives: ``source`` ("advance", "runner", "optim"), ``step`` (the rule's or
    optimizer's step counter after the work it describes), ``metrics`` (name -> float) and ``tags``
    (name -> str or int: the runner's ``arm`` and ``label``)."""

    source: str
    step: int
    metrics: Mapping[str, float]
    tags: Mapping[str, str | int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "step": self.step, "metrics": dict(self.metrics),
                "tags": dict(self.tags)}

    def keyed(self) -> dict[str, float]:
        """The metrics under tracker-style names ``source[/armK]/name`` (e.g. ``runner/arm0/delta``)."""
        prefix = self.source + (f"/arm{self.tags['arm']}" if "arm" in self.tags else "")
        return {f"{prefix}/{name}": float(value) for name, value in self.metrics.items()}


@runtime_checkable
class Callback(Protocol):
    """Anything called with one :class:`Event`."""

    def __call__(self, event: Event) -> None: ...


@runtime_checkable
class Logger(Callback, Protocol):
    """A callback that holds a resource (file, run): ``close()`` flushes and releases it."""

    def close(self) -> None: ...


def require(module: str, extra: str):
    """Import an optional tracker package, or NegdError naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise NegdError(f"{extra}: the {extra} logger needs {module!r} ({e}); "
                        f"pip install 'negd[{extra}]'") from None


def as_callbacks(callbacks: Callback | Iterable[Callback] | None) -> tuple[Callable[[Event], None], ...]:
    """``callbacks`` as a tuple (one callable, several, or none); NegdError for anything not callable."""
    if callbacks is None:
        return ()
    items = (callbacks,) if callable(callbacks) else tuple(callbacks)
    for item in items:
        if not callable(item):
            raise NegdError(f"callbacks: each must be callable with one negd.callbacks.Event, got "
                            f"{type(item).__name__}")
    return items


def emit(callbacks: tuple[Callable[[Event], None], ...], event: Event) -> None:
    for callback in callbacks:
        callback(event)


def scalar_metrics(row: Mapping) -> dict[str, float]:
    """The entries of ``row`` that are real numbers (bools and arrays left out), as floats."""
    out = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, int | float) and not _is_scalar_array(value):
            continue
        out[key] = float(value)
    return out


def _is_scalar_array(value) -> bool:
    shape = getattr(value, "shape", None)
    return shape == () and getattr(getattr(value, "dtype", None), "kind", "") in ("f", "i", "u")


def events_every(steps: int, log_every: int | None) -> int:
    """The chunk length between two events of a call of ``steps`` steps (default: 20 events per call)."""
    if log_every is None:
        return max(1, math.ceil(steps / 20))
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise NegdError(f"log_every: must be an integer >= 1, got {log_every!r}")
    return log_every
