"""The import hook that picks a hot-path module's compiled or pure-Python build (drawstate/hotpath.py).

On a directory of its own holding a module's .py and a stand-in for its extension (the hook only
looks at names and times; the usual finders would load the real one), and, in a subprocess, on
this install: DRAWSTATE_PURE_PYTHON makes every hot-path module come from its .py.
"""

from __future__ import annotations

import ast
import importlib.machinery
import logging
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from drawstate import hotpath

REPO = Path(__file__).resolve().parents[2]
NAME = "fakepkg.fast"
EXTENSION = "fast" + importlib.machinery.EXTENSION_SUFFIXES[0]


def _pair(directory: Path, *, source_age_s: float, extension_age_s: float) -> Path:
    """fast.py and its stand-in extension, each last written that many seconds ago."""
    source = directory / "fast.py"
    source.write_text("VALUE = 1\n")
    (directory / EXTENSION).write_bytes(b"")
    now = time.time()
    os.utime(source, (now - source_age_s, now - source_age_s))
    os.utime(directory / EXTENSION, (now - extension_age_s, now - extension_age_s))
    return source


def _finder(*, pure: bool = False) -> hotpath.HotPathFinder:
    return hotpath.HotPathFinder(pure, frozenset({NAME}))


def test_a_fresh_extension_is_left_to_the_usual_finders(tmp_path):
    _pair(tmp_path, source_age_s=60, extension_age_s=10)
    assert _finder().find_spec(NAME, [str(tmp_path)]) is None


def test_an_extension_older_than_its_source_is_passed_over_with_one_warning(tmp_path, caplog):
    source = _pair(tmp_path, source_age_s=10, extension_age_s=60)
    finder = _finder()
    with caplog.at_level(logging.WARNING, logger="drawstate.hotpath"):
        first = finder.find_spec(NAME, [str(tmp_path)])
        again = finder.find_spec(NAME, [str(tmp_path)])
    assert first is not None and again is not None
    assert first.origin == again.origin == str(source)
    assert isinstance(first.loader, importlib.machinery.SourceFileLoader)
    assert finder.stale == {NAME}
    [warning] = caplog.records
    assert str(source) in warning.getMessage() and "pure Python" in warning.getMessage()


def test_a_source_unpacked_just_after_its_extension_is_not_stale(tmp_path):
    """A wheel unpacks the .so just before its .py: within STALE_SLACK_S the extension is used."""
    _pair(tmp_path, source_age_s=10, extension_age_s=10 + hotpath.STALE_SLACK_S / 2)
    assert _finder().find_spec(NAME, [str(tmp_path)]) is None


def test_pure_python_forced_takes_the_source_even_beside_a_fresh_extension(tmp_path, caplog):
    source = _pair(tmp_path, source_age_s=60, extension_age_s=10)
    with caplog.at_level(logging.WARNING, logger="drawstate.hotpath"):
        spec = _finder(pure=True).find_spec(NAME, [str(tmp_path)])
    assert spec is not None and spec.origin == str(source)
    assert not caplog.records  # asked for: nothing to warn about


def test_modules_off_the_list_or_without_an_extension_are_not_touched(tmp_path):
    _pair(tmp_path, source_age_s=10, extension_age_s=60)
    assert _finder().find_spec("fakepkg.other", [str(tmp_path)]) is None
    (tmp_path / EXTENSION).unlink()
    assert _finder(pure=True).find_spec(NAME, [str(tmp_path)]) is None


def test_hot_path_is_partial_when_some_modules_run_compiled_and_some_not(monkeypatch):
    compiled, pure = types.ModuleType("fake_compiled"), types.ModuleType("fake_pure")
    compiled.__loader__ = importlib.machinery.ExtensionFileLoader("fake_compiled", "/x.so")
    pure.__loader__ = importlib.machinery.SourceFileLoader("fake_pure", "/x.py")
    monkeypatch.setitem(sys.modules, "fake_compiled", compiled)
    monkeypatch.setitem(sys.modules, "fake_pure", pure)
    monkeypatch.setattr(hotpath, "HOT_PATH_MODULES", ("fake_compiled", "fake_pure"))
    assert hotpath.hot_path() == "partial"
    monkeypatch.setattr(hotpath, "HOT_PATH_MODULES", ("fake_compiled",))
    assert hotpath.hot_path() == "compiled"
    monkeypatch.setattr(hotpath, "HOT_PATH_MODULES", ("fake_pure", "not.installed.at_all"))
    assert hotpath.hot_path() == "pure"


def test_the_hook_is_the_first_thing_drawstate_imports():
    """Else a hot-path module could be imported (compiled) before the hook could choose."""
    tree = ast.parse((REPO / "client" / "drawstate" / "__init__.py").read_text())
    first = next(node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))
    assert isinstance(first, ast.ImportFrom) and first.module == "drawstate"
    assert [alias.name for alias in first.names] == ["hotpath"]


@pytest.mark.parametrize("value", ["1", "yes"])
def test_drawstate_pure_python_runs_every_hot_path_module_from_its_source(value):
    probe = (
        "import importlib, drawstate;"
        "from drawstate.hotpath import HOT_PATH_MODULES;"
        "files = [importlib.import_module(name).__file__ for name in HOT_PATH_MODULES];"
        "print(drawstate.hot_path(), all(file.endswith('.py') for file in files))"
    )
    env = {**os.environ, hotpath.PURE_PYTHON_ENV: value}
    command = [sys.executable, "-c", probe]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pure", "True"]


def test_setup_py_compiles_exactly_the_modules_the_hook_knows():
    """setup.py reads HOT_PATH_MODULES from hotpath.py's text: one list, and every entry exists."""
    tree = ast.parse((REPO / "setup.py").read_text())
    assert any(isinstance(node, ast.FunctionDef) and node.name == "_hot_path_modules" for node in tree.body)
    roots = {"drawstate": "client", "drawstated": "daemon"}
    for name in hotpath.HOT_PATH_MODULES:
        top, *rest = name.split(".")
        assert (REPO / roots[top] / top / Path(*rest)).with_suffix(".py").is_file(), name
