"""Which modules run compiled, and the import hook that picks the compiled or the pure-Python one.

setup.py compiles the modules of HOT_PATH_MODULES with Cython from their own .py files, so the
extension and the source are the same code; the import system prefers an extension found beside
its .py. This hook (installed first thing by drawstate/__init__.py) steps in for those modules
only, and loads the .py instead when:

- DRAWSTATE_PURE_PYTHON is set (not "" or "0"), as MSGPACK_PUREPYTHON and AIOHTTP_NO_EXTENSIONS
  do for theirs: the same code, uncompiled, for comparing, debugging and profiling;
- the extension is older than its .py (a stale in-place build after an edit, a checkout or a
  mutation test): running it would run code the .py no longer says. One warning names it.

`hot_path()` says which path is active: "compiled", "pure", or "partial" (some of each).
Importing this module installs the hook; drawstate/__init__.py imports it before anything else.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Literal

log = logging.getLogger("drawstate.hotpath")

#: Set (to anything but "" or "0") to run every module of the hot path as pure Python.
PURE_PYTHON_ENV = "DRAWSTATE_PURE_PYTHON"
#: The modules setup.py compiles: those measured to cost less CPU compiled (docs/benchmarks.md,
#: "Compiled or pure Python"). Compiled as they are, the others cost more: CPython 3.11's
#: specialising interpreter already does what generic compiled code would, and the compiled code
#: loses its inline caches for attribute access. The decoder's limits hook walks every item of a
#: request, and that loop is what a C compiler speeds up. Python stays the control plane: config,
#: CLI, topology, journal, metrics.
HOT_PATH_MODULES = ("drawstated.server.decoding",)
#: An extension counts as stale only when its .py is newer by more than this: a wheel's files are
#: unpacked one after another (the .so just before its .py), so an installed pair differs by less.
STALE_SLACK_S = 1.0

HotPath = Literal["compiled", "pure", "partial"]


def pure_forced() -> bool:
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def _extension_beside(directory: str, leaf: str) -> str | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = os.path.join(directory, leaf + suffix)
        if os.path.isfile(candidate):
            return candidate
    return None


def _stale(extension: str, source: str) -> bool:
    return os.stat(source).st_mtime > os.stat(extension).st_mtime + STALE_SLACK_S


class HotPathFinder:
    """A meta-path finder for HOT_PATH_MODULES: the source's spec when the extension must not run."""

    def __init__(self, pure: bool, modules: frozenset[str] = frozenset(HOT_PATH_MODULES)) -> None:
        self.pure = pure
        self.modules = modules
        #: Modules whose extension was passed over for being older than the source (warned once each).
        self.stale: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.modules or path is None:
            return None
        leaf = fullname.rpartition(".")[2]
        for directory in path:
            source = os.path.join(directory, leaf + ".py")
            if not os.path.isfile(source):
                continue
            extension = _extension_beside(directory, leaf)
            if extension is None:
                return None  # nothing compiled here: the usual finders load the .py
            if not self.pure and not _stale(extension, source):
                return None  # the usual finders prefer the extension
            if not self.pure and fullname not in self.stale:
                self.stale.add(fullname)
                log.warning(
                    "drawstate: %s is older than %s; running that module as pure Python "
                    "(rebuild to compile it again: pip install -e .)",
                    extension,
                    source,
                )
            return importlib.util.spec_from_file_location(fullname, source)
        return None


def install() -> HotPathFinder:
    """Put the finder first on sys.meta_path (once per process); returns the one installed."""
    for finder in sys.meta_path:
        if isinstance(finder, HotPathFinder):
            return finder
    finder = HotPathFinder(pure_forced())
    sys.meta_path.insert(0, finder)
    return finder


def _compiled(name: str, finder: HotPathFinder) -> bool | None:
    """Whether `name` runs (or would run) compiled; None when its package is not installed."""
    module = sys.modules.get(name)
    if module is not None:
        return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)
    top, *middle, leaf = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        directory = os.path.join(location, *middle)
        source = os.path.join(directory, leaf + ".py")
        if os.path.isfile(source):
            extension = _extension_beside(directory, leaf)
            return extension is not None and not finder.pure and not _stale(extension, source)
    return None


def hot_path() -> HotPath:
    """ "compiled" when every hot-path module installed runs compiled, "pure" when none does."""
    finder = install()
    states = [state for name in HOT_PATH_MODULES if (state := _compiled(name, finder)) is not None]
    if states and all(states):
        return "compiled"
    return "partial" if any(states) else "pure"


install()
