"""Per-shard checkpoints and faults (negd.experiments.shards.task, shard_files): a shard continues from
its checkpoint with the numbers of an uninterrupted one, a failing shard fails the run with one line
naming it, and --resume recomputes only the shards that had not finished."""

from __future__ import annotations

import json

import pytest
import torch

import negd.experiments.shards.task as shard_task
from negd.engine import Tally
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run.problem import Problem
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.experiments.shards.files import load_shard, save_shard
from negd.experiments.shards.inprocess import split
from negd.experiments.shards.task import ShardJob, check_result, run_shard
from negd.validation import NegdError
from tests.test_shards import TINY, _assert_same_arms

real_advance = shard_task.advance_tallied


@pytest.fixture(scope="module")
def problem():
    return Problem.build(config_from_dict(TINY))


def _shard(problem, steps=0):
    """Realizations 3-4 of arm 0 (the second of 3 shards of 7), advanced ``steps`` steps."""
    arm = problem.config.arms()[0]
    rule = problem.ne_rule(arm)
    state = rule.init(problem.x0, problem.loss_fn, seed=problem.config.seed, realizations=arm.realizations)
    state, _ = real_advance(rule, state, problem.loss_fn, steps)
    return rule, split(state, 3)[1]


def _job(tmp_path, start=0, steps=20, seconds=30.0, settings="s"):
    return ShardJob("ne", 0, start, steps, str(tmp_path), settings, seconds)


def _same(a, b):
    assert torch.equal(a.state.params, b.state.params) and torch.equal(a.state.loss, b.state.loss)
    assert torch.equal(a.tally.accepted, b.tally.accepted) and torch.equal(a.tally.ties, b.tally.ties)
    assert a.state.step == b.state.step


class Stop(Exception):
    pass


def test_shard_continues_from_its_checkpoint_with_the_same_numbers(tmp_path, problem):
    rule, shard = _shard(problem)
    whole = run_shard(ShardJob("ne", 0, 0, 20), shard, rule, problem.loss_fn, lambda n: None, {})
    job = _job(tmp_path, seconds=1e-9)  # chunks of one step, a checkpoint after each
    done = []

    def stop_after_5(n):
        done.append(n)
        if sum(done) > 5:
            raise Stop

    with pytest.raises(Stop):
        run_shard(job, shard, rule, problem.loss_fn, stop_after_5, {})
    path = tmp_path / "ne-3-5.pt"
    saved = torch.load(path, weights_only=True)
    assert saved["state"]["step"] == 5 and saved["interval"] == [0, 20] and saved["attempt"] == 1
    seen = []
    resumed = run_shard(job, shard, rule, problem.loss_fn, seen.append, {})
    assert resumed.resumed_from == 5 and resumed.attempt == 2 and sum(seen) == 20  # 5 found + 15 computed
    _same(resumed, whole)
    # Complete: the next attempt returns it without computing a step.
    calls = []
    again = run_shard(job, shard, rule, problem.loss_fn, calls.append, {})
    assert again.resumed_from == 20 and calls == [20]
    _same(again, whole)


@pytest.mark.parametrize("damage", ["garbage", "other settings", "other interval", "nan", "other ids"])
def test_damaged_or_foreign_shard_checkpoint_is_ignored(tmp_path, problem, capsys, damage):
    rule, shard = _shard(problem)
    job = _job(tmp_path)
    path = tmp_path / "ne-3-5.pt"
    whole = run_shard(ShardJob("ne", 0, 0, 20), shard, rule, problem.loss_fn, lambda n: None, {})
    partial, _ = real_advance(rule, shard, problem.loss_fn, 5)
    tally = Tally(torch.zeros(2, dtype=torch.int64), torch.zeros(2, dtype=torch.int64))
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "other settings":
        save_shard(path, _job(tmp_path, settings="other"), partial, tally, 1)
    elif damage == "other interval":
        save_shard(path, _job(tmp_path, steps=30), partial, tally, 1)
    elif damage == "nan":
        save_shard(path, job, partial.replace(params=partial.params * float("nan")), tally, 1)
    else:
        save_shard(path, job, partial.replace(realization=partial.realization + 1), tally, 1)
    assert load_shard(path, job, shard) is None
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and str(path) in line and "ignored, the shard recomputes" in line
    result = run_shard(job, shard, rule, problem.loss_fn, lambda n: None, {})
    assert result.resumed_from is None
    _same(result, whole)


def test_check_result_names_what_is_wrong(problem):
    rule, shard = _shard(problem)
    job = ShardJob("ne", 0, 0, 20)
    done, tally = real_advance(rule, shard, problem.loss_fn, 20)
    check_result(job, shard, done, tally)
    with pytest.raises(NegdError, match="returned step 19, expected 20"):
        check_result(job, shard, done.replace(step=19), tally)
    with pytest.raises(NegdError, match="other realizations"):
        check_result(job, shard, done.replace(realization=done.realization + 2), tally)
    loss = done.loss.clone()
    loss[1] = float("inf")
    with pytest.raises(NegdError, match=r"non-finite parameters or loss at step 20 in 1 realization\(s\), "
                                        r"the first 4"):
        check_result(job, shard, done.replace(loss=loss), tally)


def _counting(monkeypatch, fail=None):
    """advance_tallied of the shards, recording each call's (first realization, step) in order;
    ``fail(state, result)`` returns an exception to raise or a result to return instead."""
    calls: list = []

    def advance(rule, state, loss_fn, steps):
        calls.append((int(state.realization[0]), state.step))
        out = real_advance(rule, state, loss_fn, steps)
        bad = None if fail is None else fail(state, out)
        if isinstance(bad, BaseException):
            raise bad
        return out if bad is None else bad

    monkeypatch.setattr(shard_task, "advance_tallied", advance)
    return calls


def _arm0(calls: list) -> list:
    """The calls of a resumed run's arm 0 (arm 1 starts after it, at step 0)."""
    return calls[:next((i for i, (_, step) in enumerate(calls) if step == 0), len(calls))]


def test_failed_shard_is_one_line_and_resume_recomputes_only_unfinished_shards(tmp_path, monkeypatch,
                                                                              capsys):
    whole = run_experiment(config_from_dict(TINY), tmp_path / "whole", progress=False, report=False)
    # Shards of 7 with K = 3: realizations 0-2, 3-4, 5-6. The last fails in arm 0's second interval.
    _counting(monkeypatch, lambda s, out: RuntimeError("boom") if int(s.realization[0]) == 5
              and s.step >= 10 else None)
    out = tmp_path / "run"
    with pytest.raises(NegdError) as e:
        run_experiment(config_from_dict(TINY), out, progress=False, report=False, shards=3)
    assert str(e.value) == "shard 2 of arm 0 (NE, realizations 5-6) failed: RuntimeError: boom"
    assert json.loads((out / "status.json").read_text())["state"] == "interrupted"
    assert torch.load(out / "arms/0/checkpoint.pt", weights_only=True)["rows"] == 2  # nothing lost
    assert sorted(p.name for p in (out / "arms/0/shards").glob("*.pt")) == ["ne-0-3.pt", "ne-3-5.pt"]
    capsys.readouterr()
    calls = _counting(monkeypatch)
    assert resume_experiment(out, progress=False, report=False).state == "complete"
    # The finished shards were not recomputed in the failed interval (steps 10-20 of arm 0).
    assert {first for first, step in _arm0(calls) if step < 20} == {5}
    err = capsys.readouterr().err
    assert "shard 0 of arm 0 (NE, realizations 0-2): found its checkpoint at step 20 of 10-20 and was " \
           "complete (attempt 2)" in err
    _assert_same_arms(whole.run_dir, out, 2)
    assert not any(any((out / "arms" / str(arm) / "shards").iterdir()) for arm in (0, 1))  # cleared


def test_shard_with_bad_numbers_fails_the_run_and_is_not_kept(tmp_path, monkeypatch):
    def nan_params(state, out):
        if int(state.realization[0]) == 3 and state.step >= 10:
            new, tally = out
            return new.replace(params=new.params * float("nan")), tally
        return None

    _counting(monkeypatch, nan_params)
    out = tmp_path / "run"
    with pytest.raises(NegdError, match=r"^shard 1 of arm 0 \(NE, realizations 3-4\) failed: non-finite "
                                        r"parameters or loss at step 20 in 2 realization\(s\), the first 3$"):
        run_experiment(config_from_dict(TINY), out, progress=False, report=False, shards=3)
    assert sorted(p.name for p in (out / "arms/0/shards").glob("*.pt")) == ["ne-0-3.pt"]
    assert torch.load(out / "arms/0/checkpoint.pt", weights_only=True)["rows"] == 2


def test_shard_checkpoint_seconds_is_checked(tmp_path):
    with pytest.raises(NegdError, match=r"shard_checkpoint_seconds: must be a number of seconds > 0"):
        run_experiment(config_from_dict(TINY), tmp_path / "r", progress=False, report=False, shards=2,
                       shard_checkpoint_seconds=0)
    assert not (tmp_path / "r").exists()


def test_cli_shard_checkpoint_flag(tmp_path, capsys, monkeypatch):
    from negd.cli import main
    from negd.experiments.run import runner

    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))  # JSON is YAML
    assert main(["run", str(config), "--out", str(tmp_path / "a"), "--no-progress", "--shards", "2",
                 "--shard-checkpoint", "0"]) == 2
    assert "--shard-checkpoint: must be a number of seconds > 0, got '0'" in capsys.readouterr().err
    given = {}

    def fake_run(config, out, **kw):
        given.update(kw)
        raise NegdError("stopped here")

    monkeypatch.setattr(runner, "run_experiment", fake_run)
    assert main(["run", str(config), "--no-progress", "--shards", "2", "--shard-checkpoint", "0.5"]) == 2
    assert given["shard_checkpoint_seconds"] == 0.5 and given["shards"] == 2


def test_run_interrupted_inside_a_shard_resumes_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the middle of shard 1's interval (steps 10-20 of arm 0): --resume continues that shard
    from its last checkpoint (step 15), reuses the finished shard 0, and ends identical."""
    whole = run_experiment(config_from_dict(TINY), tmp_path / "whole", progress=False, report=False)
    _counting(monkeypatch, lambda s, out: KeyboardInterrupt() if int(s.realization[0]) == 3
              and s.step == 15 else None)
    out = tmp_path / "run"
    part = run_experiment(config_from_dict(TINY), out, progress=False, report=False, shards=3,
                          shard_checkpoint_seconds=1e-9)  # chunks of one step, a checkpoint after each
    assert part.state == "interrupted"
    capsys.readouterr()
    calls = _counting(monkeypatch)
    assert resume_experiment(out, progress=False, report=False).state == "complete"
    first_calls = _arm0(calls)
    assert first_calls[0] == (3, 15)  # shard 0 skipped, shard 1 continued at 15: steps 10-14 not redone
    assert not any(first == 0 and step < 20 for first, step in first_calls)  # shard 0 not at all
    err = capsys.readouterr().err
    assert "shard 1 of arm 0 (NE, realizations 3-4): found its checkpoint at step 15 of 10-20 and " \
           "continued from it (attempt 2)" in err
    assert "shard 0 of arm 0 (NE, realizations 0-2): found its checkpoint at step 20 of 10-20 and " \
           "was complete (attempt 2)" in err
    _assert_same_arms(whole.run_dir, out, 2)
