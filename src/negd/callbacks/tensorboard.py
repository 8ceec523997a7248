"""TensorBoard logger (optional extra ``pip install 'negd[tensorboard]'``): torch's SummaryWriter.

Every metric of every event becomes a scalar ``source[/armK]/name`` at the event's step, in event
files under ``log_dir`` (``tensorboard --logdir DIR`` shows them).
"""

from __future__ import annotations

from pathlib import Path

from negd.callbacks import Event, require

__all__ = ["TensorBoardLogger"]


class TensorBoardLogger:
    """Write each event's metrics as TensorBoard scalars into ``log_dir``."""

    def __init__(self, log_dir: str | Path) -> None:
        require("tensorboard", "tensorboard")  # torch's writer needs it; a clear error when absent
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def __call__(self, event: Event) -> None:
        for key, value in event.keyed().items():
            self.writer.add_scalar(key, value, global_step=event.step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()
