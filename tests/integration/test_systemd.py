"""systemd integration without systemd: sd_notify datagrams and socket activation, as PID 1 would do them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drawstate import Client, DrawStateError
from drawstate.protocol import encode_frame
from tests.conftest import wait_until
from tests.support.daemon import DaemonProcess
from tests.support.wire import RawPeer

ACTIVATE = (
    "import os, sys;"
    "os.dup2(int(sys.argv[1]), 3);"
    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES='drawstate');"
    "os.execv(sys.executable, [sys.executable, '-m', 'drawstated', *sys.argv[2:]])"
)


@pytest.fixture
def notify_socket(sock_dir):
    path = sock_dir / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield path, sock
    sock.close()


def _messages(sock: socket.socket, until: str) -> list[str]:
    seen: list[str] = []
    while not any(until in message for message in seen):
        seen.append(sock.recv(4096).decode())
    return seen


def test_daemon_notifies_ready_watchdog_and_stopping(sock_dir, own_redis, notify_socket):
    path, sock = notify_socket
    proc = DaemonProcess(
        sock_dir / "d.sock",
        ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")],
        env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"},
    ).start(wait=False)
    try:
        ready = _messages(sock, "READY=1")
        assert any("STATUS=serving" in message for message in ready)
        assert proc.socket_path.exists()  # READY only once the socket accepts
        _messages(sock, "WATCHDOG=1")
        _messages(sock, "WATCHDOG=1")  # keeps coming while the loop is healthy
        proc.terminate()
        assert any("STOPPING=1" in message for message in _messages(sock, "STOPPING=1"))
        assert proc.wait() == 0
    finally:
        proc.stop()


class ActivatedDaemon:
    """A daemon started the way systemd's socket activation starts one: the listener is ours."""

    def __init__(self, listener: socket.socket, args: list[str], log: Path) -> None:
        self.listener, self.args, self.log = listener, args, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        fd = self.listener.fileno()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", ACTIVATE, str(fd), *self.args], pass_fds=[fd], stdout=log, stderr=log
            )

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(30)


@pytest.fixture
def held_listener(sock_dir):
    path = sock_dir / "activated.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o660)
    listener.listen(128)
    yield path, listener
    listener.close()


def test_client_that_connected_before_the_daemon_started_is_served(sock_dir, own_redis, held_listener):
    path, listener = held_listener
    peer = RawPeer(path, timeout=20)  # queued in the backlog: nobody accepts yet
    peer.send_raw(encode_frame({"id": 1, "op": "ping"}))
    daemon = ActivatedDaemon(
        listener, ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")], sock_dir / "a.log"
    )
    daemon.start()
    try:
        reply = peer.read()
        assert reply["id"] == 1 and reply["ok"] is True
    finally:
        peer.close()
        assert daemon.stop() == 0
    assert path.exists()  # the socket is systemd's: the daemon never unlinks it


def test_restart_under_socket_activation_loses_no_request(sock_dir, own_redis, held_listener, new_state):
    path, listener = held_listener
    args = ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")]
    first = ActivatedDaemon(listener, args, sock_dir / "a.log")
    first.start()
    acknowledged: list[int] = []
    failures: list[str] = []
    stop = threading.Event()
    state = new_state(lock_key="restart:player", total=10_000)

    def game() -> None:
        with Client(path, timeout=15) as client:
            while not stop.is_set() or not acknowledged:
                state.completed_count += 1
                state.results.append(state.completed_count)
                try:
                    acknowledged.append(client.save(state).version)
                except DrawStateError as exc:  # no retry loop here: the Client's own resend must do
                    failures.append(repr(exc))
                    return

    thread = threading.Thread(target=game)
    thread.start()
    wait_until(lambda: len(acknowledged) > 20)
    assert first.stop() == 0  # SIGTERM mid-stream; the listener stays open in this process
    second = ActivatedDaemon(listener, args, sock_dir / "b.log")
    second.start()
    count = len(acknowledged)
    wait_until(lambda: len(acknowledged) > count + 20, timeout=20)
    stop.set()
    thread.join(20)
    try:
        assert failures == []
        assert acknowledged == list(range(1, len(acknowledged) + 1))  # no gap, no duplicate
        with Client(path, timeout=5) as client:
            stored = client.load("restart:player")
        assert stored is not None and stored.completed_count == len(acknowledged)
    finally:
        assert second.stop() == 0
