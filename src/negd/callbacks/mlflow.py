"""MLflow logger (optional extra ``pip install 'negd[mlflow]'``): one MLflow run per logger.

Uses an explicit ``MlflowClient`` (no global active run), so several loggers can live side by side.
``tracking_uri``: where runs go, e.g. ``file:/path/mlruns`` (the local file store; no server) or a
server's address; default MLflow's own (``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from negd.callbacks import Event, require

__all__ = ["MLflowLogger"]


class MLflowLogger:
    """Log each event's metrics (``source[/armK]/name`` at the event's step) to a new MLflow run."""

    def __init__(self, tracking_uri: str | None = None, *, experiment: str = "negd",
                 run_name: str | None = None, params: Mapping[str, object] | None = None) -> None:
        require("mlflow", "mlflow")
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
        for key, value in (params or {}).items():
            self.client.log_param(self.run_id, key, value)

    def __call__(self, event: Event) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, event.step) for key, value in event.keyed().items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
