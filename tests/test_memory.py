"""negd.experiments.run.memory: a run whose sizes pass validation but cannot fit in memory is refused in
one line before anything is written, and a resume on a machine with less memory before anything is
changed (issue 19, class 4: an allocator traceback, and a run directory whose resume failed the same way)."""

from __future__ import annotations

import hashlib
import json

import pytest

from negd.cli import main
from negd.experiments.config.schema import config_from_dict
from negd.experiments.run import memory
from negd.experiments.run.problem import Problem
from negd.experiments.run.runner import resume_experiment, run_experiment
from negd.validation import NegdError
from tests.test_shards import TINY

# 1e8 realizations (the schema's maximum) of a 1000-wide network: 3000 parameters, about 12 TB.
ABSURD = TINY | {"network": {"depth": 1, "width": 1000, "output_bias": False}, "realizations": 10**8,
                 "scan": None}


def test_absurd_size_is_refused_in_one_line_and_writes_nothing(tmp_path, capsys):
    config = tmp_path / "absurd.yaml"
    config.write_text(json.dumps(ABSURD))
    out = tmp_path / "run"
    assert main(["run", str(config), "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("negd: error: realizations: this run needs about"), err
    assert "100000000 realizations x 3000 parameters" in err
    assert not out.exists()


@pytest.mark.parametrize("change, field", [({"realizations": 10**8}, "realizations"),
                                           ({"network": {"depth": 1000, "width": 3000}}, "network"),
                                           ({"n_snapshots": 100_000, "t_final": 100.0,
                                             "network": {"depth": 10, "width": 1000}}, "n_snapshots")])
def test_every_absurd_dimension_is_refused_by_run_experiment(tmp_path, change, field):
    with pytest.raises(NegdError, match=f"^{field}: this run needs about"):
        run_experiment(config_from_dict(TINY | change), tmp_path / "r", progress=False, report=False)
    assert not (tmp_path / "r").exists()


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def test_resume_with_too_little_memory_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    def stop(arm, row):
        if (arm, row) == (0, 1):
            raise KeyboardInterrupt

    out = tmp_path / "run"
    assert run_experiment(config_from_dict(TINY), out, progress=False, report=False,
                          on_snapshot=stop).state == "interrupted"
    before = _digest(out)
    monkeypatch.setattr(memory, "available_bytes", lambda: 100 << 20)  # a machine with 100 MB free
    pattern = r"^(network|realizations|n_snapshots): this run needs about .* more than the 0.105 GB free"
    with pytest.raises(NegdError, match=pattern) as e:
        resume_experiment(out, progress=False, report=False)
    assert "\n" not in str(e.value)
    assert _digest(out) == before
    monkeypatch.undo()
    assert resume_experiment(out, progress=False, report=False).state == "complete"


def test_the_estimate_counts_the_largest_arm_and_every_snapshot():
    config = config_from_dict(TINY)
    arms = config.arms()
    n = Problem.build(config).x0.shape[0]
    one = memory.estimate_memory(config, arms[:1])
    both = memory.estimate_memory(config, arms)
    assert both.snapshot_bytes > one.snapshot_bytes  # every arm's rows
    assert both.total - both.snapshot_bytes == one.total - one.snapshot_bytes  # arms run one at a time
    bigger = config_from_dict(TINY | {"realizations": 7000})
    grown = memory.estimate_memory(bigger, bigger.arms()[:1])
    per_realization = n * (3 * 4 + 4 + 3 * 8)  # float32: three copies, the normals, float64 statistics
    assert grown.total - one.total == (7000 - TINY["realizations"]) * per_realization


def test_skip_variable_and_unknown_memory_allow_the_run(monkeypatch):
    config = config_from_dict(ABSURD)
    monkeypatch.setenv("NEGD_SKIP_MEMORY_CHECK", "1")
    memory.check_memory(config, config.arms(), available=1)
    monkeypatch.delenv("NEGD_SKIP_MEMORY_CHECK")
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # no /proc/meminfo: nothing to compare
    memory.check_memory(config, config.arms())
    assert memory.available_bytes() is None
