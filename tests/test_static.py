"""Lint, format and type checks run with the tests, so `pytest` is the one gate."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Found through this interpreter, so an unactivated virtualenv still runs it.
needs_ruff = pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is in the test extra")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


@needs_ruff
def test_ruff_lint_passes():
    result = _run(sys.executable, "-m", "ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_ruff
def test_ruff_format_is_clean():
    result = _run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_strict_on_the_client_and_the_daemon():
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


#: Modules split by concept, not by size; but one past this almost surely holds two ideas.
MODULE_LINES_WARNING = 500


def test_no_module_grows_past_one_concept():
    sources = [
        p for root in ("client", "daemon", "benchmarks", "examples") for p in (REPO / root).rglob("*.py")
    ]
    too_long = {
        str(p.relative_to(REPO)): n
        for p in sources
        if (n := len(p.read_text().splitlines())) > MODULE_LINES_WARNING
    }
    assert not too_long


def test_every_module_opens_with_a_docstring():
    sources = [p for root in ("client", "daemon") for p in (REPO / root).rglob("*.py")]
    missing = [str(p.relative_to(REPO)) for p in sources if not p.read_text().lstrip().startswith('"""')]
    assert not missing
