"""One daemon per data dir and per socket, and start-up failures as one line with a named exit code.

Real daemons as processes: the second one must start no redis-server, change
nothing, and leave the first one serving; an expected failure is one stderr
line, never a traceback.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from drawstate import Client
from drawstated.cli.client import EXIT_USAGE
from drawstated.server import startup
from drawstated.server.locks import DATA_LOCK_NAME, socket_lock_path
from drawstated.server.startup import (
    EXIT_ALREADY_RUNNING,
    EXIT_BAD_CONFIG,
    EXIT_PASSWORD_FILE,
    EXIT_SOCKET_IN_USE,
)
from tests.support.daemon import DaemonProcess
from tests.support.serve import one_line, serve_once


def _unchanged(paths: list[Path]) -> dict[str, tuple[int, int, bytes]]:
    return {str(path): (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes()) for path in paths}


def _serves_a_save(socket_path: Path, new_state) -> bool:
    with Client(socket_path, timeout=10) as client:
        state = new_state(lock_key=f"still-serving:{os.getpid()}")
        return client.save(state).version == 1


@pytest.fixture
def embedded_daemon(sock_dir):
    proc = DaemonProcess(sock_dir / "first.sock", ["--data-dir", str(sock_dir / "data")]).start()
    yield proc
    proc.stop()


def test_second_daemon_on_the_same_data_dir_exits_1_naming_the_pid_and_starts_no_redis(
    embedded_daemon, sock_dir, new_state
):
    data = sock_dir / "data"
    assert embedded_daemon.proc is not None
    first_pid = embedded_daemon.proc.pid
    watched = [data / "redis.conf", data / "redis.pid", data / DATA_LOCK_NAME]
    before = _unchanged(watched)

    result = serve_once("--socket", str(sock_dir / "second.sock"), "--data-dir", str(data))

    assert result.returncode == EXIT_ALREADY_RUNNING == 1
    line = one_line(result.stderr)
    assert f"pid {first_pid}" in line and str(data) in line
    assert _unchanged(watched) == before  # no redis.conf rewritten, no redis-server started
    assert not (sock_dir / "second.sock").exists()
    assert (data / "redis.sock").exists()  # the first daemon's Redis keeps its socket
    assert _serves_a_save(embedded_daemon.socket_path, new_state)


def test_second_daemon_on_the_same_socket_with_its_own_data_dir_exits_1_naming_the_pid(
    sock_dir, own_redis, new_state
):
    first = DaemonProcess(
        sock_dir / "d.sock", ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")]
    ).start()
    try:
        assert first.proc is not None
        inode = first.socket_path.stat().st_ino
        result = serve_once(
            "--socket", str(first.socket_path), "--redis-url", own_redis.url,
            "--data-dir", str(sock_dir / "other-data"),
        )  # fmt: skip
        assert result.returncode == EXIT_ALREADY_RUNNING
        line = one_line(result.stderr)
        assert f"pid {first.proc.pid}" in line and str(first.socket_path) in line
        assert first.socket_path.stat().st_ino == inode  # the first one's socket was not replaced
        assert _serves_a_save(first.socket_path, new_state)
    finally:
        first.stop()


def test_the_locks_are_released_at_exit_so_the_next_daemon_starts(sock_dir, own_redis):
    args = ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")]
    first = DaemonProcess(sock_dir / "d.sock", args).start()
    first.terminate()
    assert first.wait() == 0
    assert (sock_dir / "data" / DATA_LOCK_NAME).read_text() == ""  # no pid left behind
    again = DaemonProcess(sock_dir / "d.sock", args).start()
    try:
        assert again.proc is not None
        assert (sock_dir / "data" / DATA_LOCK_NAME).read_text().strip() == str(again.proc.pid)
        assert socket_lock_path(again.socket_path).read_text().strip() == str(again.proc.pid)
    finally:
        again.stop()


def test_a_stale_socket_left_by_a_killed_daemon_is_replaced(sock_dir, own_redis):
    path = sock_dir / "d.sock"
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(path))
    left.close()  # the path stays, nobody listens: what SIGKILL leaves
    proc = DaemonProcess(path, ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")]).start()
    try:
        with Client(path, timeout=5) as client:
            assert client.ping().redis == "up"
    finally:
        proc.stop()


def test_a_foreign_listener_on_the_socket_is_left_alone_and_named(sock_dir):
    path = sock_dir / "d.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen(8)
        result = serve_once("--socket", str(path), "--data-dir", str(sock_dir / "data"))
        assert result.returncode == EXIT_SOCKET_IN_USE
        assert "listening on" in one_line(result.stderr)
        assert path.exists()
        assert not (sock_dir / "data" / "redis.sock").exists()  # refused before Redis


def test_a_bad_configuration_is_one_line_and_its_own_exit_code(sock_dir):
    result = serve_once(
        "--socket", str(sock_dir / "d.sock"), "--data-dir", str(sock_dir / "data"),
        "--redis-sentinel", "127.0.0.1:26379",
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_CONFIG
    assert "master" in one_line(result.stderr)
    assert not (sock_dir / "data").exists()  # refused before it touched anything


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:notaport/0", "redis://:hunter2@h:x/0"]
)
def test_a_malformed_redis_url_is_a_bad_configuration_that_never_prints_the_url(sock_dir, url):
    result = serve_once(
        "--socket", str(sock_dir / "d.sock"), "--data-dir", str(sock_dir / "data"), "--redis-url", url,
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_CONFIG
    line = one_line(result.stderr)
    assert "Redis URL" in line and "hunter2" not in result.stderr and "Traceback" not in result.stderr
    assert not (sock_dir / "data").exists()  # refused before it touched anything


def test_a_metrics_address_that_cannot_be_bound_is_a_bad_configuration(sock_dir, redis_url):
    if redis_url.startswith("cluster:"):
        pytest.skip("one Redis is enough: the metrics listener is what is checked")
    result = serve_once(
        "--socket", str(sock_dir / "d.sock"), "--data-dir", str(sock_dir / "data"), "--redis-url", redis_url,
        "--metrics-port", "9", "--metrics-addr", "no.such.host.invalid",
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_CONFIG
    assert "metrics cannot listen" in one_line(result.stderr) and "Traceback" not in result.stderr


def test_a_missing_tls_file_is_a_bad_configuration_not_a_traceback(sock_dir):
    result = serve_once(
        "--socket", str(sock_dir / "d.sock"), "--data-dir", str(sock_dir / "data"),
        "--redis-url", "rediss://127.0.0.1:6380/0", "--redis-tls-ca", str(sock_dir / "no-ca.pem"),
    )  # fmt: skip
    assert result.returncode == EXIT_BAD_CONFIG
    assert "TLS" in one_line(result.stderr)


def test_an_unreadable_password_file_is_one_line_and_its_own_exit_code(sock_dir):
    missing = sock_dir / "no-such-secret"
    result = serve_once(
        "--socket", str(sock_dir / "d.sock"), "--data-dir", str(sock_dir / "data"),
        env={"DRAWSTATE_REDIS_PASSWORD_FILE": str(missing)},
    )  # fmt: skip
    assert result.returncode == EXIT_PASSWORD_FILE
    assert str(missing) in one_line(result.stderr)
    assert len({EXIT_ALREADY_RUNNING, EXIT_BAD_CONFIG, EXIT_PASSWORD_FILE, EXIT_SOCKET_IN_USE}) == 4


def test_operations_md_lists_every_start_up_exit_code_with_its_value():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    listed = {name: int(code) for code, name in re.findall(r"^\| (\d+) \| `(EXIT_\w+)`", doc, re.MULTILINE)}
    defined = {name: value for name, value in vars(startup).items() if name.startswith("EXIT_")}
    assert {name: listed.get(name) for name in defined} == defined
    assert listed["EXIT_USAGE"] == EXIT_USAGE
    assert len(set(listed.values())) == len(listed)  # each failure its own code
