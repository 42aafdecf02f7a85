"""The pure-Python fallback passes the everyday tests too, in every run beside the compiled build.

The rest of the run tests whichever path this install runs: the compiled one after .ci/run's build.
This module runs tests/unit and the integration modules of the everyday ops (save, load, pending,
complete, rollback, the errors, idempotency and pipelining, multi-draws, stored states) once more
in a subprocess with DRAWSTATE_PURE_PYTHON=1, daemons included (they inherit it), so the fallback a
machine without a C compiler installs is tested as well. Skipped when the run is pure already.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import drawstate
from drawstate.hotpath import PURE_PYTHON_ENV

REPO = Path(__file__).resolve().parents[2]
#: The subset: fast (about a minute on 2 busy cores), and every op a game process uses.
SUBSET = (
    "tests/unit",
    "tests/integration/test_ops.py",
    "tests/integration/test_errors.py",
    "tests/integration/test_idempotency_and_pipelining.py",
    "tests/integration/test_multidraw.py",
    "tests/integration/test_stored_states.py",
)
RUN_TIMEOUT_S = 540
PROBE = (
    "import importlib, drawstate;"
    "from drawstate.hotpath import HOT_PATH_MODULES;"
    "files = [importlib.import_module(name).__file__ for name in HOT_PATH_MODULES];"
    "print(drawstate.hot_path(), sum(not file.endswith('.py') for file in files))"
)


@pytest.mark.skipif(drawstate.hot_path() == "pure", reason="this run is pure Python already")
@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_the_pure_python_fallback_passes_unit_and_everyday_op_tests():
    env = {**os.environ, PURE_PYTHON_ENV: "1"}
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert probe.stdout.split() == ["pure", "0"], probe.stdout + probe.stderr
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET]
    result = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
