"""Chaos fixtures: daemons as real child processes, private redis-servers, and the run's report.

The daemons here run as `python -m drawstated` children, so a crash is a dead
process and memory is the child's own RSS (/proc/<pid>/status). Fixtures the
hypothesis tests use are module-scoped: one daemon takes every fuzzed example,
which is the point (it must survive them all), and hypothesis allows no
function-scoped fixture around @given.

Each test adds what it measured to `chaos_report`; the numbers are printed at
the end of the run ("chaos report"), since the issue asks for them.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.redis_proc import RedisProcess
from tests.support.daemon import DaemonProcess

_REPORT: dict[str, Any] = {}


@pytest.fixture(scope="session")
def chaos_report() -> dict[str, Any]:
    """What the chaos tests measured, printed in the terminal summary."""
    return _REPORT


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _REPORT:
        return
    terminalreporter.section("chaos report")
    for key in sorted(_REPORT):
        terminalreporter.write_line(f"{key}: {_REPORT[key]}")


def _short_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))  # unix socket paths stay < 100 bytes


@pytest.fixture(scope="module")
def chaos_redis() -> Iterator[RedisProcess]:
    """A redis-server for one test module; tests that pause Redis use their own (own_redis)."""
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


def start_daemon_process(directory: Path, redis_url: str, *args: str) -> DaemonProcess:
    return DaemonProcess(
        directory / "d.sock",
        ["--redis-url", redis_url, "--data-dir", str(directory / "data"), *args],
    ).start()


@pytest.fixture
def spawn_daemon() -> Iterator[Callable[..., DaemonProcess]]:
    """Start `python -m drawstated --redis-url URL ARGS...` in a fresh short dir; stopped after the test."""
    started: list[tuple[DaemonProcess, Path]] = []

    def spawn(redis_url: str, *args: str) -> DaemonProcess:
        directory = _short_dir("dsc-")
        daemon = start_daemon_process(directory, redis_url, *args)
        started.append((daemon, directory))
        return daemon

    yield spawn
    for daemon, directory in started:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def module_daemon(chaos_redis: RedisProcess) -> Iterator[DaemonProcess]:
    """One daemon child for a whole module (the fuzzing target). WAIT asks for no replica."""
    directory = _short_dir("dsf-")
    daemon = start_daemon_process(directory, chaos_redis.url, "--min-replicas", "0")
    yield daemon
    daemon.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def many_fds() -> Iterator[int]:
    """Raise the soft RLIMIT_NOFILE (inherited by daemons started afterwards); restore it after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
