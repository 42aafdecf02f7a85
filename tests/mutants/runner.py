"""One mutant at a time: a private copy of the tree, the exact edit applied, the tests that name it run there.

The copy is what runs, never the editable install: pytest gets PYTHONPATH pointing at the copy's
client/, daemon/ and root, and a probe checks, before any test, that the mutated module (or the
Lua script, through importlib.resources as scripts.py reads it) is the copy's file. An edit must
match exactly once, or the mutant is an error: the code moved and the catalog must follow it.

Killed: a test failed. Survived: they passed (a finding: write the test that notices). Error:
the edit did not apply, the mutated file does not compile (Python, or Lua as Redis compiles it),
the copy was not what ran, no test was selected, collection broke, tests errored in set-up
without any failing, or the run timed out. A baseline run on the unmutated copy first makes sure
a kill is the mutant's doing, not a test that fails anyway.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from testbed.redis_proc import RedisProcess
from tests.mutants.catalog import Mutant

#: The tree this module is part of: what is copied unless another source is given.
REPO = Path(__file__).resolve().parents[2]
#: A mutant's test run should take seconds; one that takes this long is stopped and is an error.
RUN_TIMEOUT_S = 900.0
#: The baseline runs many mutants' tests at once.
BASELINE_TIMEOUT_S = 1800.0
#: After SIGTERM, how long pytest gets to stop its Redis processes before SIGKILL.
STOP_GRACE_S = 15.0
#: Left out when the source is not a git checkout (an exported tree): never part of the project.
_NOT_SOURCE = frozenset(
    {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".benchmarks"}
)
_COUNT_RE = re.compile(r"(\d+) (failed|passed|skipped|errors?|deselected|xfailed|xpassed)\b")
_FAILED_RE = re.compile(r"^FAILED (\S+)", re.MULTILINE)
_ERROR_RE = re.compile(r"^ERROR (\S+)", re.MULTILINE)
_INCLUDE_RE = re.compile(r"^--- @include (\w+)$", re.MULTILINE)
_PROBE = """
import importlib, importlib.resources, sys
for spec in sys.argv[1:]:
    module, _, resource = spec.partition(":")
    if resource:
        print(importlib.resources.files(module).joinpath(resource))
    else:
        print(importlib.import_module(module).__file__)
"""
#: The directories the packages are imported from (the rest, tests/, from the root).
_PACKAGE_ROOTS = ("client", "daemon")


class MutantError(Exception):
    """The mutant could not be tried as written (an edit that no longer applies, a copy not used)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    mutant: Mutant
    status: str  # "killed" | "survived" | "error"
    summary: str  # pytest's counts: "1 failed, 2 passed"
    killed_by: str  # the first failing test, for a kill
    seconds: float
    detail: str = ""  # why, for an error; the output's tail for a survivor


# --- the copy ----------------------------------------------------------------------


def _checkout(source: Path) -> bool:
    """Whether `source` is the top of a git checkout (not an export, nor a directory inside one)."""
    top = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
        check=False,
    )
    return top.returncode == 0 and Path(top.stdout.strip()).resolve() == source.resolve()


def source_files(source: Path) -> list[str]:
    """The tree's files: tracked plus untracked-but-not-ignored in a git checkout, else every file."""
    if _checkout(source):
        listed = subprocess.run(
            ["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        )
        names = [name for name in listed.stdout.decode().split("\0") if name]
        return [name for name in names if (source / name).is_file()]  # a deleted tracked file is gone
    return [
        str(path.relative_to(source))
        for path in sorted(source.rglob("*"))
        if path.is_file() and not _NOT_SOURCE.intersection(path.relative_to(source).parts)
    ]


def describe(source: Path) -> str:
    """The source as a table's heading names it: its path, and its commit when it is a checkout."""
    if not _checkout(source):
        return str(source)
    head = subprocess.run(
        ["git", "-C", str(source), "log", "-1", "--format=%h"], capture_output=True, text=True, check=False
    )
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{source} at {head.stdout.strip()}" + (
        " with uncommitted changes" if dirty.stdout.strip() else ""
    )


def copy_tree(source: Path, dest: Path) -> None:
    for name in source_files(source):
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, target, follow_symlinks=False)


def apply(mutant: Mutant, root: Path) -> None:
    """Make the mutant's edits in `root`; MutantError unless each matches exactly once."""
    path = root / mutant.file
    if not path.is_file():
        raise MutantError(f"{mutant.file} does not exist: update tests/mutants/catalog.py")
    text = path.read_text()
    for number, edit in enumerate(mutant.edits, 1):
        found = text.count(edit.old)
        if found != 1:
            raise MutantError(
                f"edit {number} of {mutant.name} matches {found} times in {mutant.file} (exactly once "
                "expected): the code moved; update tests/mutants/catalog.py"
            )
        text = text.replace(edit.old, edit.new)
    path.write_text(text)


def check_compiles(mutant: Mutant, root: Path) -> None:
    """MutantError unless the mutated file still compiles: a kill must come from the broken invariant,
    never from a script Redis refuses to load or a module Python cannot import.

    A Lua script is compiled by a private redis-server (SCRIPT LOAD compiles without running), with
    its `--- @include` libraries expanded as scripts.py does; a library is checked in every script
    that includes it.
    """
    path = root / mutant.file
    if path.suffix == ".py":
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as exc:
            raise MutantError(f"the mutated {mutant.file} does not compile: {exc}") from None
    if path.suffix != ".lua":
        return
    scripts = [
        path,
        *(p for p in sorted(path.parent.glob("*.lua")) if f"--- @include {path.stem}\n" in p.read_text()),
    ]
    server = RedisProcess().start()
    try:
        with server.client() as client:
            for script in scripts:
                source = _INCLUDE_RE.sub(
                    lambda m: (path.parent / f"{m[1]}.lua").read_text(), script.read_text()
                )
                try:
                    client.script_load(source)
                except redis.ResponseError as exc:
                    raise MutantError(f"Redis cannot compile the mutated {script.name}: {exc}") from None
    finally:
        server.cleanup()


def _import_spec(file: str) -> str:
    """How the probe finds a file of the tree: a module name, or `package:resource` (a Lua script)."""
    parts = Path(file).parts
    if parts[0] in _PACKAGE_ROOTS:
        parts = parts[1:]
    if file.endswith(".py"):
        return ".".join([*parts[:-1], *([] if parts[-1] == "__init__.py" else [parts[-1][:-3]])])
    return f"{parts[0]}:{'/'.join(parts[1:])}"


def run_env(root: Path, topologies: str) -> dict[str, str]:
    """The environment of a run in the copy: its packages first, the topologies the mutant names."""
    paths = [str(root / "client"), str(root / "daemon"), str(root)]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONDONTWRITEBYTECODE": "1",
        # The mutated .py is what runs, never an extension compiled from the original (drawstate/hotpath.py).
        "DRAWSTATE_PURE_PYTHON": "1",
        "DRAWSTATE_TEST_TOPOLOGIES": topologies,
    }


def probe(root: Path, mutant: Mutant, env: dict[str, str]) -> None:
    """MutantError unless the mutated file, and both packages, import from the copy."""
    wanted = {
        _import_spec(mutant.file): mutant.file,
        "drawstate": "client/drawstate/__init__.py",
        "drawstated": "daemon/drawstated/__init__.py",
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *wanted],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise MutantError(f"probe failed: {result.stderr.strip()[-500:]}")
    found = result.stdout.splitlines()
    if len(found) != len(wanted):
        raise MutantError(f"probe printed {found!r} for {list(wanted)}")
    for (spec, expected), seen in zip(wanted.items(), found, strict=True):
        if Path(seen).resolve() != (root / expected).resolve():
            raise MutantError(f"{spec} imports from {seen}, not from the copy {root / expected}")


# --- running pytest ----------------------------------------------------------------


def pytest_command(tests: Sequence[str], keyword: str | None, *, stop_first: bool) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    if stop_first:
        command.insert(3, "-x")
    if keyword:
        command += ["-k", keyword]
    return command


def run_pytest(
    command: list[str], root: Path, env: dict[str, str], timeout_s: float
) -> tuple[int | None, str]:
    """(exit code, output); None as the code when it ran past `timeout_s` and was stopped.

    pytest runs in its own session, so a stopped run (a timeout, or Ctrl-C here, which its session
    does not see) is stopped with everything it started, its Redis processes too.
    """
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, _stop(proc)
    except BaseException:
        _stop(proc)
        raise
    return proc.returncode, output


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM to the run's process group (its fixtures stop their servers), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    return output


def summary_of(output: str) -> str:
    """pytest's final counts, "1 failed, 2 passed", or "" when it printed none."""
    for line in reversed(output.splitlines()):
        counts = _COUNT_RE.findall(line)
        if counts and re.search(r" in [\d.]+s", line):
            return ", ".join(f"{number} {word}" for number, word in counts)
    return ""


def failures_of(output: str) -> list[str]:
    return _FAILED_RE.findall(output)


def covers(spec: str, node_id: str) -> bool:
    """Whether a test spec of the catalog (file, file::test) selects the collected `node_id`."""
    return node_id == spec or node_id.startswith((spec + "[", spec + "::"))


# --- one mutant, the baseline, the catalog ------------------------------------------


def run_mutant(mutant: Mutant, source: Path, timeout_s: float = RUN_TIMEOUT_S) -> Outcome:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="drawstate-mutant-"))
    try:
        copy_tree(source, root)
        env = run_env(root, mutant.topologies)
        try:
            apply(mutant, root)
            check_compiles(mutant, root)
            probe(root, mutant, env)
        except MutantError as exc:
            return Outcome(mutant, "error", "", "", time.monotonic() - started, str(exc))
        command = pytest_command(mutant.tests, mutant.keyword, stop_first=True)
        code, output = run_pytest(command, root, env, timeout_s)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return judge(mutant, code, output, time.monotonic() - started)


def run_each(mutant: Mutant, source: Path, timeout_s: float = RUN_TIMEOUT_S) -> list[Outcome]:
    """The mutant against each of its tests alone: does every one notice on its own?"""
    return [
        run_mutant(dataclasses.replace(mutant, tests=(spec,)), source, timeout_s) for spec in mutant.tests
    ]


def judge(mutant: Mutant, code: int | None, output: str, seconds: float) -> Outcome:
    summary, failed = summary_of(output), failures_of(output)
    if code is None:
        return Outcome(mutant, "error", summary, "", seconds, f"stopped after {seconds:.0f} s")
    if code == 1 and failed:
        return Outcome(mutant, "killed", summary, failed[0], seconds)
    if code == 0:
        return Outcome(mutant, "survived", summary, "", seconds, output[-2000:])
    if code == 1 and _ERROR_RE.search(output):
        why = "tests errored in set-up or tear-down, none failed: the mutant breaks more than its invariant"
    else:
        why = {5: "no test selected"}.get(code, f"pytest exited {code}")
    return Outcome(mutant, "error", summary, "", seconds, f"{why}: {output[-1500:]}")


def run_baseline(mutants: Sequence[Mutant], source: Path) -> dict[str, str]:
    """Each mutant's tests on the unmutated tree: {mutant name: why its kill would mean nothing}.

    Mutants selected by node ids alone share one run per topology setting; a -k selection runs alone.
    """
    groups: dict[tuple[str, str | None, str], list[Mutant]] = {}
    for mutant in mutants:
        key = (mutant.topologies, mutant.keyword, mutant.name if mutant.keyword else "")
        groups.setdefault(key, []).append(mutant)
    broken: dict[str, str] = {}
    root = Path(tempfile.mkdtemp(prefix="drawstate-baseline-"))
    try:
        copy_tree(source, root)
        for (topologies, keyword, _), members in groups.items():
            tests = list(dict.fromkeys(spec for mutant in members for spec in mutant.tests))
            command = pytest_command(tests, keyword, stop_first=False)
            code, output = run_pytest(command, root, run_env(root, topologies), BASELINE_TIMEOUT_S)
            failed = failures_of(output) + _ERROR_RE.findall(output)
            for mutant in members:
                if code not in (0, 1):
                    broken[mutant.name] = f"baseline run exited {code}: {output[-800:]}"
                elif bad := [node for node in failed if any(covers(spec, node) for spec in mutant.tests)]:
                    broken[mutant.name] = f"fails without the mutant too: {', '.join(bad)}"
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return broken


def run_catalog(
    mutants: Sequence[Mutant],
    source: Path = REPO,
    *,
    baseline: bool = True,
    timeout_s: float = RUN_TIMEOUT_S,
    each: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Outcome]:
    """Every mutant against its tests (with `each`, against each test alone: one outcome per test)."""
    broken = run_baseline(mutants, source) if baseline else {}
    if baseline:
        progress(f"baseline: {len(broken)} of {len(mutants)} mutants' tests fail unmutated")
    outcomes = []
    for number, mutant in enumerate(mutants, 1):
        if mutant.name in broken:
            these = [Outcome(mutant, "error", "", "", 0.0, broken[mutant.name])]
        else:
            these = run_each(mutant, source, timeout_s) if each else [run_mutant(mutant, source, timeout_s)]
        outcomes += these
        for outcome in these:
            progress(f"[{number}/{len(mutants)}] {mutant.name}: {outcome.status} ({outcome.seconds:.1f} s)")
    return outcomes


def table(outcomes: Iterable[Outcome], *, each: bool = False) -> str:
    """A Markdown table: mutant, file (with `each`: the one test), tests run, result, killer, seconds."""
    rows = [("mutant", "test" if each else "file", "tests run", "result", "killed by", "s")]
    for o in outcomes:
        killer = o.killed_by.split("::")[-1]
        where = o.mutant.tests[0].split("::")[-1] if each else o.mutant.file
        rows.append((o.mutant.name, where, o.summary or "-", o.status, killer or "-", f"{o.seconds:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
