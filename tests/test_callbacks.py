"""Logging hooks (negd.callbacks, issue 16): one Event protocol for advance, the runner and the optimizers;
the JSONL logger; TensorBoard, MLflow and W&B loggers read back from what they wrote (each skipped, with
the reason, when its package is absent)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

import negd
from negd.callbacks import Event, JSONLLogger, as_callbacks
from negd.callbacks.jsonl import read_jsonl
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.runner import run_experiment
from negd.experiments.run.store import load_snapshots
from negd.validation import NegdError

TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "init": {"kind": "paper", "sigma0": 0.1},
        "beta": "inf", "alpha": 1e-3, "lambda": 1, "realizations": 6, "t_final": 0.03, "n_snapshots": 4,
        "trajectories": 2, "seed": 5, "scan": {"factors": [2], "realizations": 3}}
EVENTS = [Event("advance", 10, {"loss_mean": 0.5, "acceptance": 0.25}),
          Event("runner", 0, {"delta": 1e-6, "gd_loss": 0.4}, {"arm": 0, "label": "sigma"}),
          Event("runner", 20, {"delta": 2e-6, "gd_loss": 0.3}, {"arm": 0, "label": "sigma"}),
          Event("optim", 5, {"loss": math.inf})]


def _problem(backend: str = "auto"):
    spec = negd.MLPSpec(1, 8, output_bias=False)
    task = negd.get_task("sin2pi")
    loss = negd.MLPLoss(spec, task.inputs, task.targets, backend=backend)
    return negd.Neuroevolution(sigma=1e-3), loss, negd.paper_init(spec.n_params, 0.1, seed=0)


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_advance_logs_every_k_steps_and_computes_the_same_numbers(tmp_path, backend):
    rule, loss, x0 = _problem(backend)
    state = rule.init(x0, loss, realizations=5, seed=1)
    plain = negd.advance(rule, state, loss, 23)
    with JSONLLogger(tmp_path / "log.jsonl") as log:
        logged = negd.advance(rule, state, loss, 23, callbacks=log, log_every=10)
    assert torch.equal(plain.params, logged.params) and torch.equal(plain.loss, logged.loss)
    records = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in records] == [10, 20, 23] and {r["source"] for r in records} == {"advance"}
    last = records[-1]["metrics"]
    assert last["loss_mean"] == float(logged.loss.double().mean())
    assert last["loss_min"] <= last["loss_mean"] <= last["loss_max"] and 0 <= last["acceptance"] <= 1
    events = []
    negd.advance(rule, state, loss, 40, callbacks=[events.append])  # default: 20 events per call
    assert [e.step for e in events] == list(range(2, 41, 2))


def test_optimizer_logs_every_k_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 4), nn.Tanh(), nn.Linear(4, 1))
    x = torch.linspace(-1, 1, 50)[:, None]
    events: list[Event] = []
    opt = negd.optim.Neuroevolution(model.parameters(), sigma=1e-2, callbacks=events.append, log_every=5)
    losses = [float(opt.step(lambda: nn.functional.mse_loss(model(x), torch.sin(x)))) for _ in range(20)]
    assert [e.step for e in events] == [5, 10, 15, 20] and {e.source for e in events} == {"optim"}
    assert [e.metrics["loss"] for e in events] == [losses[4], losses[9], losses[14], losses[19]]
    assert events[-1].metrics["accepted"] == opt.accepted
    amc = negd.optim.AdaptiveMC(model.parameters(), sigma=1e-2, callbacks=events.append)
    amc.step(lambda: nn.functional.mse_loss(model(x), torch.sin(x)))
    assert events[-1].step == 1


def test_runner_logs_every_snapshot_of_every_arm(tmp_path):
    events: list[Event] = []
    with JSONLLogger(tmp_path / "runner.jsonl") as log:
        result = run_experiment(config_from_dict(TINY), tmp_path / "run", progress=False, report=False,
                                callbacks=[log, events.append])
    assert result.state == "complete"
    records = read_jsonl(tmp_path / "runner.jsonl")
    assert len(records) == len(events) and records[0]["tags"] == {"arm": 0, "label": events[0].tags["label"]}
    for arm in (0, 1):
        saved = load_snapshots(tmp_path / "run" / "arms" / str(arm) / "snapshots.npz")
        mine = [e for e in events if e.tags["arm"] == arm]
        assert [e.step for e in mine] == saved["ne_step"].tolist()
        np.testing.assert_array_equal([e.metrics["ne_loss_mean"] for e in mine], saved["ne_loss_mean"])
        assert "param_mean" not in mine[0].metrics  # arrays are not metrics


def test_bad_callbacks_and_log_every_are_one_line_errors():
    rule, loss, x0 = _problem()
    state = rule.init(x0, loss, realizations=2, seed=1)
    with pytest.raises(NegdError, match="callbacks"):
        negd.advance(rule, state, loss, 3, callbacks=[42])
    with pytest.raises(NegdError, match="log_every"):
        negd.advance(rule, state, loss, 3, callbacks=print, log_every=0)
    with pytest.raises(NegdError, match="log_every"):
        negd.optim.Neuroevolution(nn.Linear(1, 1).parameters(), sigma=1e-2, log_every=0)
    assert as_callbacks(None) == ()


def test_jsonl_writes_non_finite_numbers_as_text_and_skips_a_torn_line(tmp_path):
    path = tmp_path / "log.jsonl"
    with JSONLLogger(path) as log:
        for event in EVENTS:
            log(event)
    with open(path, "a") as f:
        f.write('{"source": "adv')  # a killed writer
    records = read_jsonl(path)
    assert len(records) == 4 and records[3]["metrics"]["loss"] == math.inf
    assert json.loads(path.read_text().splitlines()[3])["metrics"]["loss"] == "inf"


@pytest.mark.parametrize("module,logger", [("tensorboard", "TensorBoardLogger"), ("mlflow", "MLflowLogger"),
                                           ("wandb", "WandbLogger")])
def test_a_missing_tracker_is_a_one_line_error_naming_the_extra(module, logger, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)
    cls = getattr(importlib.import_module(f"negd.callbacks.{module}"), logger)
    with pytest.raises(NegdError, match=rf"pip install 'negd\[{module}\]'"):
        cls("x") if module != "wandb" else cls(mode="offline")


def _need(module: str):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'negd[{module}]')")


def test_tensorboard_event_files_read_back(tmp_path):
    _need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from negd.callbacks.tensorboard import TensorBoardLogger

    log = TensorBoardLogger(tmp_path / "tb")
    for event in EVENTS[:3]:
        log(event)
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert {"advance/loss_mean", "runner/arm0/delta", "runner/arm0/gd_loss"} <= set(acc.Tags()["scalars"])
    delta = acc.Scalars("runner/arm0/delta")
    assert [s.step for s in delta] == [0, 20]
    np.testing.assert_allclose([s.value for s in delta], [1e-6, 2e-6], rtol=1e-6)  # stored as float32


def test_mlflow_local_file_store_reads_back(tmp_path, monkeypatch):
    _need("mlflow")
    from mlflow.tracking import MlflowClient

    from negd.callbacks.mlflow import MLflowLogger

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    log = MLflowLogger(uri, experiment="negd-test", run_name="tiny", params={"sigma": 1e-3})
    for event in EVENTS[:3]:
        log(event)
    log.close()
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(log.run_id)
    assert run.data.params == {"sigma": "0.001"} and run.info.status == "FINISHED"
    history = client.get_metric_history(log.run_id, "runner/arm0/delta")
    assert sorted((m.step, m.value) for m in history) == [(0, 1e-6), (20, 2e-6)]
    assert [m.value for m in client.get_metric_history(log.run_id, "advance/loss_mean")] == [0.5]


def test_wandb_offline_run_reads_back(tmp_path, monkeypatch):
    _need("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    from negd.callbacks.wandb import WandbLogger

    log = WandbLogger("negd-test", dir=tmp_path, mode="offline", config={"sigma": 1e-3})
    for event in EVENTS[:3]:
        log(event)
    log.close()
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history = _wandb_history(next(runs[0].glob("*.wandb")))
    for _ in range(100):  # wandb's service process may still be writing the file after finish()
        if sum("runner/arm0/delta" in row for row in history) == 2:
            break
        time.sleep(0.1)
        history = _wandb_history(next(runs[0].glob("*.wandb")))
    arm0 = [row for row in history if "runner/arm0/delta" in row]
    assert [(r["runner/arm0/step"], r["runner/arm0/delta"]) for r in arm0] == [(0, 1e-6), (20, 2e-6)]
    assert [r["advance/loss_mean"] for r in history if "advance/loss_mean" in r] == [0.5]


def _wandb_history(path) -> list[dict]:
    """The history rows of an offline run file: W&B's LevelDB-style log (a 7-byte header ':W&B', then
    32 KiB blocks of records, each with a 7-byte header: CRC, length, type FULL/FIRST/MIDDLE/LAST)
    of protobuf Records (wandb.proto), read here because wandb no longer ships a Python reader."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    rows, pos, block, pending = [], 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows
