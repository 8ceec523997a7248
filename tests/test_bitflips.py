"""A flipped bit in any file negd reads back is detected, never read as different numbers (issue 19,
class 3): checkpoint.pt, shard checkpoints, snapshots.npz, snapshots.log (negd.sealed).

Loader level: bits flipped all over a real file of each kind; the loader must refuse the file
(CorruptFile, one line) or return exactly the original content. User level: a flipped bit in each
file kind of an interrupted run, then ``negd run --resume``: one line naming the file, and numbers
identical to an uninterrupted run's.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from negd.cli import main
from negd.engine import Tally
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.problem import Problem
from negd.experiments.run.runner import run_experiment
from negd.experiments.run.store import load_checkpoint
from negd.experiments.shards.files import load_shard, save_shard
from negd.experiments.shards.inprocess import split
from negd.experiments.shards.task import ShardJob
from negd.runfiles import CorruptFile, load_npz, load_npz_log
from negd.sealed import DIGEST_KEY, content_digest, read_records, record
from tests.runtools import assert_same_numbers

TINY = {"network": {"depth": 1, "width": 4, "output_bias": False}, "task": "sin2pi",
        "init": {"kind": "paper", "sigma0": 0.1}, "beta": "inf", "alpha": 1e-3, "lambda": 1,
        "realizations": 5, "t_final": 0.03, "n_snapshots": 4, "trajectories": 2, "seed": 7,
        "scan": {"factors": [2], "realizations": 5}}
FLIPS = 400  # bit positions spread over each file


class _Stop(KeyboardInterrupt):
    pass


def _flipped(data: bytes, k: int) -> bytes:
    """``data`` with bit k % 8 of byte (k * 7919) % len flipped (positions spread over the file)."""
    i = (k * 7919) % len(data)
    return data[:i] + bytes([data[i] ^ (1 << (k % 8))]) + data[i + 1:]


def _without_digest(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != DIGEST_KEY}


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run stopped after arm 1's snapshot row 2 (arm 0 complete: snapshots.npz; arm 1: its log)."""
    out = tmp_path_factory.mktemp("flip") / "run"

    def stop(arm, row):
        if (arm, row) == (1, 2):
            raise _Stop

    assert run_experiment(config_from_dict(TINY), out, progress=False, report=False,
                          on_snapshot=stop).state == "interrupted"
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("flipref") / "run"
    run_experiment(config_from_dict(TINY), out, progress=False, report=False)
    return out


def _check_every_flip(tmp_path, original: bytes, name: str, load, same) -> int:
    """Flip FLIPS bits one at a time; ``load(path)`` must raise CorruptFile or give what ``same`` accepts.
    Returns how many flips were refused."""
    refused = 0
    path = tmp_path / name
    for k in range(FLIPS):
        path.write_bytes(_flipped(original, k))
        try:
            loaded = load(path)
        except CorruptFile as e:
            assert "\n" not in str(e)
            refused += 1
            continue
        assert same(loaded), f"flip {k} (byte {(k * 7919) % len(original)}) read as other content"
    return refused


def test_arm_checkpoint(tmp_path, interrupted):
    original = (interrupted / "arms" / "0" / "checkpoint.pt").read_bytes()
    want = content_digest(_without_digest(load_checkpoint(interrupted / "arms" / "0" / "checkpoint.pt")))
    refused = _check_every_flip(tmp_path, original, "checkpoint.pt", load_checkpoint,
                                lambda p: content_digest(_without_digest(p)) == want)
    assert refused >= FLIPS // 3  # the other flips hit bytes that hold no content (zip padding)


def test_snapshots_npz(tmp_path, interrupted):
    path = interrupted / "arms" / "0" / "snapshots.npz"
    want = load_npz(path)
    refused = _check_every_flip(tmp_path, path.read_bytes(), "snapshots.npz", load_npz,
                                lambda a: a.keys() == want.keys() and all(
                                    np.array_equal(a[k], want[k], equal_nan=True) for k in a))
    assert refused >= FLIPS // 3  # the other flips hit bytes that hold no content (zip padding)


def test_snapshot_log(tmp_path, interrupted):
    path = interrupted / "arms" / "1" / "snapshots.log"
    records, problem = read_records(path)
    assert problem is None and len(records) == 3
    want = load_npz_log(path)
    refused = _check_every_flip(tmp_path, path.read_bytes(), "snapshots.log", load_npz_log,
                                lambda a: a.keys() == want.keys() and all(
                                    np.array_equal(a[k], want[k], equal_nan=True) for k in a))
    assert refused == FLIPS  # no byte of a record is unchecked (header CRC, payload SHA-256)


def test_snapshot_log_torn_tail_is_dropped_not_refused(tmp_path, interrupted):
    data = (interrupted / "arms" / "1" / "snapshots.log").read_bytes()
    extra = record(b"a row being appended")
    for cut in (1, 20, len(extra) - 1):
        (tmp_path / "log").write_bytes(data + extra[:cut])
        assert load_npz_log(tmp_path / "log")["t"].shape == (3,)


def test_shard_checkpoint(tmp_path, capsys):
    problem = Problem.build(config_from_dict(TINY))
    arm = problem.config.arms()[0]
    rule = problem.ne_rule(arm)
    state = rule.init(problem.x0, problem.loss_fn, seed=problem.config.seed, realizations=arm.realizations)
    shard = split(state, 2)[1]
    job = ShardJob("ne", 0, 0, 10, str(tmp_path), "s", 30.0)
    from negd.engine import advance_tallied

    advanced, tally = advance_tallied(rule, shard, problem.loss_fn, 10)
    path = tmp_path / "ne-3-5.pt"
    save_shard(path, job, advanced, Tally(tally.accepted, tally.ties), 1)
    original = path.read_bytes()

    def load(p):
        saved = load_shard(path, job, shard)
        if saved is None:
            raise CorruptFile(p, "refused", "")
        return saved

    refused = _check_every_flip(tmp_path, original, "ne-3-5.pt", load, lambda s: (
        torch.equal(s.state.params, advanced.params) and torch.equal(s.state.loss, advanced.loss)
        and torch.equal(s.tally.accepted, tally.accepted) and s.state.step == 10))
    assert refused >= FLIPS // 3  # the other flips hit bytes that hold no content (zip padding)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == refused and all("ignored, the shard recomputes" in line for line in lines)


@pytest.mark.parametrize("name", ["0/checkpoint.pt", "0/snapshots.npz", "1/checkpoint.pt", "1/snapshots.log"])
@pytest.mark.parametrize("where", [0.3, 0.6, 0.9])
def test_resume_after_a_flipped_bit(tmp_path, interrupted, reference, capsys, name, where):
    """negd run --resume on a run directory with one flipped bit: one line naming the file, the arm
    recomputed, the numbers of an uninterrupted run."""
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    path = out / "arms" / name
    data = path.read_bytes()
    i = int(where * len(data))
    path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:])
    code = main(["run", "--resume", str(out), "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if "arms/" in line]
    assert code == 0
    arm = name.split("/")[0]
    if err:  # a bit in bytes that hold no content (zip padding) changes nothing and needs no line
        assert len(err) == 1 and f"arms/{name}" in err[0] and f"recomputing arm {arm}" in err[0], err
    assert_same_numbers(out, reference)


def test_files_from_before_checksums_resume_with_a_note(tmp_path, interrupted, reference, capsys):
    """checkpoint.pt and snapshots.npz written by negd 0.1 (no digest) load unverified with one note
    each; the run resumes to the same numbers. A shard file without a digest is recomputed instead."""
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    for arm in ("0", "1"):
        path = out / "arms" / arm / "checkpoint.pt"
        torch.save(_without_digest(torch.load(path, weights_only=True)), path)
    npz = out / "arms" / "0" / "snapshots.npz"
    arrays = load_npz(npz)
    np.savez(npz, **arrays)
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "before checksums" in line]
    assert len(notes) == 3 and all("read without verification" in line for line in notes), notes
    assert_same_numbers(out, reference)
