"""Build: compile the hot path with Cython when it can, else install the same modules as pure Python.

pyproject.toml holds the project's metadata; this file only adds the extension modules. Each
module of HOT_PATH_MODULES (client/drawstate/hotpath.py, the one list) is compiled from its own
.py file (Cython's pure-Python mode), so there is one source and the fallback is the same code.
As msgpack's and aiohttp's builds do, nothing here may fail the install: without Cython or a C
compiler, or with DRAWSTATE_BUILD_PURE set, it installs pure Python and prints one warning line.
Which path runs is chosen at import (DRAWSTATE_PURE_PYTHON forces pure; `drawstate.hot_path()`).
"""

from __future__ import annotations

import ast
import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
#: Set (to anything but "" or "0") to skip compiling: a pure-Python install.
BUILD_PURE_ENV = "DRAWSTATE_BUILD_PURE"
#: Where each top-level package's sources live (pyproject.toml: packages.find where).
PACKAGE_ROOTS = {"drawstate": "client", "drawstated": "daemon"}
#: Compiled as Python, with the same semantics: annotations are not C types (an `int` argument
#: stays any Python int, a `float` one is not coerced), so an extension behaves as its .py does.
COMPILER_DIRECTIVES = {"language_level": "3", "annotation_typing": False, "binding": True}
#: No debug info: smaller extensions, built in about half the time.
EXTRA_COMPILE_ARGS = ["-g0"] if os.name == "posix" else []


def _warn(message: str) -> None:
    print(f"drawstate: {message}; installing the pure-Python hot path", file=sys.stderr)


def _hot_path_modules() -> tuple[str, ...]:
    """The list drawstate's import hook knows, read from its file without running it."""
    tree = ast.parse((HERE / "client" / "drawstate" / "hotpath.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "HOT_PATH_MODULES" for target in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise LookupError("HOT_PATH_MODULES is not in client/drawstate/hotpath.py")


def _source(name: str) -> str:
    top, *rest = name.split(".")
    return "/".join([PACKAGE_ROOTS[top], top, *rest]) + ".py"


def _extensions() -> list[Extension]:
    """One extension per hot-path module, from its .py (translated to C at build_ext time)."""
    if os.environ.get(BUILD_PURE_ENV, "") not in ("", "0"):
        print(f"drawstate: {BUILD_PURE_ENV} is set; installing the pure-Python hot path", file=sys.stderr)
        return []
    if importlib.util.find_spec("Cython") is None:
        _warn("Cython is not installed")
        return []
    return [
        Extension(name, [_source(name)], extra_compile_args=EXTRA_COMPILE_ARGS)
        for name in _hot_path_modules()
    ]


class OptionalBuildExt(build_ext):
    """build_ext that translates the .py files with Cython and never fails the install.

    A failure leaves the modules concerned pure Python (their .py files are installed either way)
    and says so in one line.
    """

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1
        self._failed: list[str] = []

    def run(self) -> None:
        if not self.extensions:
            return
        try:
            from Cython.Build import cythonize  # noqa: PLC0415  # only a compiled build needs it

            translated = cythonize(
                self.extensions,
                compiler_directives=COMPILER_DIRECTIVES,
                build_dir=os.path.join(self.build_temp, "cython"),
                quiet=True,
            )
            # Same Extension objects (setuptools set them up), now with the C files as sources.
            c_sources = {ext.name: ext.sources for ext in translated}
            for ext in self.extensions:
                ext.sources = c_sources[ext.name]
            super().run()
        except Exception as exc:  # a Cython error, or no C compiler at all
            _warn(f"the hot path could not be compiled ({type(exc).__name__}: {exc})")
            return
        if self._failed:
            count = f"{len(self._failed)} of {len(self.extensions)}"
            _warn(f"{count} modules could not be compiled (the first: {self._failed[0]})")

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # this module only; the others still compile (one line in run)
            self._failed.append(f"{ext.name}: {type(exc).__name__}: {exc}")


def _private_build_base() -> str:
    """A build directory of this build's own, not the checkout's build/: two builds of one tree at
    once (two pip installs, say) must not compile into, or copy from, each other's files."""
    path = tempfile.mkdtemp(prefix="drawstate-build-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


setup(
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
    options={"build": {"build_base": _private_build_base()}},
)
