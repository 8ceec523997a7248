"""The docs site and the examples (issue 16): CI runs exactly the README's test command (mkdocs build
--strict included), the site's navigation holds every page, the API page names only stable paths,
and every script in examples/ runs at a tiny size."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.runtools import negd_env

ROOT = Path(__file__).resolve().parents[1]
STABLE = {"negd", "negd.rules", "negd.optim", "negd.twins", "negd.theory", "negd.analysis"}
# Arguments that make each example tiny (seconds): every example must be listed.
TINY = {"optimizer_loop.py": ["--steps", "30"],
        "ensemble_and_twin.py": ["--steps", "20", "--realizations", "8"],
        "logging_hooks.py": ["--steps", "20"]}


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    return next(line.strip() for line in text.splitlines()
                if line.strip().startswith("pip install torch==2.13.0 && pip install -e \".[test"))


def test_ci_runs_the_readme_test_command_with_the_strict_docs_build():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()[-1]
    assert ci.replace("pip install -q ", "pip install ") == _readme_test_command()
    assert _readme_test_command().endswith("mkdocs build --strict")


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        for value in (item.values() if isinstance(item, dict) else [item]):
            out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def test_the_site_holds_every_page_and_the_api_only_stable_paths():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = set(_nav_pages(config["nav"]))
    docs = ROOT / "docs"
    every = {p.relative_to(docs).as_posix() for p in docs.glob("*.md")}  # results/ need not be in the nav
    assert every <= pages, every - pages
    assert all((docs / page).is_file() for page in pages), pages
    referenced = set(re.findall(r"^::: ([\w.]+)", (docs / "api.md").read_text(), re.M))
    assert referenced == STABLE, referenced ^ STABLE


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_runs_at_a_tiny_size(script):
    assert script in TINY, f"examples/{script}: add its tiny arguments to TINY"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *TINY[script]], env=negd_env(),
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "an example prints what it computed"
