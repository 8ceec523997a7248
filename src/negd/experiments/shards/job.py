"""What a shard task is given: one snapshot interval of one block of realizations
(negd.experiments.shards.inprocess).

A plain, picklable description (a Ray task takes it as it is): which dynamics of which arm, the
step range, and where and how often the shard checkpoints its progress
(negd.experiments.shards.files). The shard's state travels next to it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_CHECKPOINT_SECONDS", "ShardJob"]

# Seconds of work between two checkpoints of a shard (a killed worker loses at most about this).
DEFAULT_CHECKPOINT_SECONDS = 30.0


@dataclass(frozen=True)
class ShardJob:
    """One snapshot interval of one kind of shard: ``kind`` "ne" (neuroevolution) or "twin" (the gradient
    twin ensemble) of arm ``arm_index``, ``steps`` steps from ``start_step``. ``folder``: where the shards
    keep their checkpoints (absolute path; None: none), ``settings``: the arm checkpoint's settings
    (JSON), which a shard checkpoint must repeat to be trusted."""

    kind: str
    arm_index: int
    start_step: int
    steps: int
    folder: str | None = None
    settings: str = ""
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS

    @property
    def target_step(self) -> int:
        return self.start_step + self.steps
