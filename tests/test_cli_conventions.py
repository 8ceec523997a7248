"""CLI conventions (issue 16): --version, help for every argument, hints naming real flags, no empty run
directory after a refused start, one time estimate, one progress style, `negd info`, and the torch
fallback said in the verdict."""

from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import negd
from negd import cli
from negd.analysis import build_report
from negd.analysis.synthetic import make_run_dir
from negd.progress import ArmProgress, wanted
from tests.runtools import negd_env

ROOT = Path(__file__).resolve().parents[1]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"negd": parser, **action.choices}


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"negd {negd.__version__}"


def test_every_argument_of_every_command_has_help():
    missing = []
    for name, parser in _subparsers().items():
        if name == "bench":  # its arguments belong to negd.bench (negd bench --help)
            continue
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction) and not (action.help or "").strip():
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_hints_name_flags_that_exist():
    """Every `rerun with --flag` / `resume with ... --flag` in the messages names an option of the CLI."""
    options = {s for p in _subparsers().values() for a in p._actions for s in a.option_strings}
    sources = [*(ROOT / "src" / "negd" / "analysis").rglob("*.py"), ROOT / "src" / "negd" / "cli.py"]
    hinted = set()
    for path in sources:
        for hint in re.findall(r"(?:rerun|resume|continue) with[^\"']*", path.read_text()):
            hinted |= set(re.findall(r"(--[a-z][a-z-]*)", hint))
    assert "--dtype" in hinted  # the resolution hint of the verdict (it said "dtype float64")
    assert hinted <= options, hinted - options


def test_the_main_jobs_time_is_stated_once_and_the_same_everywhere(capsys):
    readme = (ROOT / "README.md").read_text()
    experiments = (ROOT / "docs" / "experiments.md").read_text()
    assert cli.MAIN_JOB_TIME in readme and cli.MAIN_JOB_TIME in experiments
    assert cli.main(["reproduce", "--help"]) == 0
    assert cli.MAIN_JOB_TIME in " ".join(capsys.readouterr().out.split())
    for text in (readme, experiments):  # the old, contradicting estimates are gone
        assert "about 10 minutes" not in text and "a few minutes on a 2-core" not in text


def test_a_refused_digits_start_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if scikit-learn were not installed
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    out = tmp_path / "digits-run"
    assert cli.main(["reproduce", "digits", "--out", str(out)]) == cli.EXIT_ERROR
    assert "scikit-learn" in capsys.readouterr().err
    assert not out.exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_one_bar_per_arm_with_rate_and_time_left_only_on_a_terminal(monkeypatch):
    assert not wanted(True)  # pytest captures the output: not a terminal
    monkeypatch.setattr(sys, "stdout", _Terminal())
    err = _Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    assert wanted(True) and not wanted(False)
    bars = ArmProgress(True)
    for label in ("arm 0 (sigma)", "arm 1 (sigma/2)"):
        bars.start_arm(label, 1000, 100)
        bars.update(400)
    bars.close()
    text = err.getvalue()
    assert "arm 0 (sigma)" in text and "arm 1 (sigma/2)" in text
    assert "500/1.00k" in text and "r-step/s" in text and "<" in text  # count, rate, time left
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # stdout to a file: no bars
    assert not ArmProgress(True).enabled


def test_info_names_the_kernel_torch_cuda_and_ray():
    for kernels, expected in ((True, None), (False, "torch fallback, 25-50x slower")):
        proc = subprocess.run([sys.executable, "-m", "negd.cli", "info"], env=negd_env(kernels),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        lines = {line.split(":")[0]: line for line in proc.stdout.splitlines() if ":" in line}
        assert {"negd", "kernel", "torch", "CUDA", "Ray"} <= set(lines), proc.stdout
        if expected:
            assert expected in lines["kernel"]
        else:
            assert lines["kernel"].split()[1] in ("prebuilt", "native", "torch"), lines["kernel"]


def test_a_torch_path_run_says_so_in_the_report_and_the_verdict_lines(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run", seed=1)  # synthetic runs record "kernel": false
    assert json.loads((run / "config.json").read_text())["kernel"] is False
    build_report(run)
    from negd.analysis.report_markdown import TORCH_PATH_NOTE

    assert f"- {TORCH_PATH_NOTE}" in (run / "report.md").read_text()
    cli._print_verdict(run)
    assert "25-50x" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"kernel": True}))
    build_report(run)
    assert TORCH_PATH_NOTE not in (run / "report.md").read_text()


@pytest.mark.parametrize("command", ["run", "sweep", "report"])
def test_subcommand_help_describes_its_arguments(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "positional arguments" in text or "options" in text
