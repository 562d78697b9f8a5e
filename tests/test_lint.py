"""ruff and mypy as tests, so that the one test command (.ci/run, the README's) lints and type-checks.

Both read their settings from pyproject.toml ([tool.ruff], [tool.mypy]: strict on sim/, fast/ and
perf/). They run as subprocesses of this interpreter (`python -m ruff`, `python -m mypy`), so the
versions are those the `test` extra installs. mypy keeps its incremental cache in .mypy_cache at the
repository root (ignored by git): 11-18 s cold on 2 busy cores, under 2 s warm (both tests).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINTED = ["src", "tests", "benchmarks", "objectives"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: pip install -e '.[test]' installs it")


def test_ruff_clean():
    _need("ruff")
    done = _run("ruff", "check", "--no-fix", *LINTED)
    assert done.returncode == 0, f"ruff check {' '.join(LINTED)}:\n{done.stdout}{done.stderr}"


def test_mypy_clean():
    _need("mypy")
    done = _run("mypy", "--cache-dir", str(ROOT / ".mypy_cache"))
    assert done.returncode == 0, f"mypy (files from pyproject.toml):\n{done.stdout}{done.stderr}"
