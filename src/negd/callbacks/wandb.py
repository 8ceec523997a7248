"""Weights & Biases logger (optional extra ``pip install 'negd[wandb]'``); offline by default.

``mode="offline"`` (default) writes the run under ``dir`` with no account and no network
(``wandb sync`` uploads it later); ``mode="online"`` logs to the W&B service. Metrics are named
``source[/armK]/name``; the event's step goes with them as ``source[/armK]/step`` (W&B's own step
must only increase, and a run's arms each start at step 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from negd.callbacks import Event, require

__all__ = ["WandbLogger"]


class WandbLogger:
    """Log each event's metrics to a W&B run (``project``, ``name``, ``config`` as for ``wandb.init``)."""

    def __init__(self, project: str = "negd", *, dir: str | Path | None = None, mode: str = "offline",
                 name: str | None = None, config: Mapping[str, object] | None = None) -> None:
        wandb = require("wandb", "wandb")
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, dir=None if dir is None else str(dir), mode=mode, name=name,
                              config=dict(config or {}))

    def __call__(self, event: Event) -> None:
        keyed = event.keyed()
        prefix = next(iter(keyed)).rpartition("/")[0] if keyed else event.source
        self.run.log({**keyed, f"{prefix}/step": event.step})

    def close(self) -> None:
        self.run.finish()
