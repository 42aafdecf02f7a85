"""systemd integration without systemd: sd_notify, socket activation, and the unit's hardening.

sd_notify datagrams and socket activation are done as PID 1 would do them; the
unit is rated by `systemd-analyze security`, and a real daemon with its
embedded Redis runs under strace to show it stays inside the unit's syscall filter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from drawstate import Client, DrawStateError
from drawstate.protocol import encode_frame
from tests.support.daemon import DaemonProcess
from tests.support.waiting import wait_until
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


# --- the unit's hardening: scored by systemd-analyze, and the daemon still runs inside its filter ----

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "drawstated.service"
#: The most `systemd-analyze security` may rate the unit (0 is locked down, 10 is wide open).
MAX_EXPOSURE = 1.5
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@needs_systemd_analyze
def test_the_unit_rates_at_most_1_5_in_systemd_analyze_security():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if "--offline" in result.stderr:
        pytest.skip("this systemd-analyze cannot rate a unit file offline")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    print(f"systemd-analyze security: {match.group(1)}")
    assert float(match.group(1)) <= MAX_EXPOSURE, "\n".join(
        line for line in result.stdout.splitlines() if line.startswith("✗")
    )


def _syscall_group(name: str) -> set[str]:
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager", name],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    calls: set[str] = set()
    for line in listing.splitlines()[1:]:
        entry = line.strip()
        if entry.startswith("@"):
            calls |= _syscall_group(entry)
        elif entry and not entry.startswith("#"):
            calls.add(entry)
    return calls


def _unit_allows() -> set[str]:
    """The unit's SystemCallFilter= lines in order: the first allows, `~` lines deny, later ones allow."""
    allowed: set[str] = set()
    for line in UNIT.read_text().splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1]
        deny = value.startswith("~")
        calls = set().union(*(_syscall_group(item) if item.startswith("@") else {item}
                              for item in value.lstrip("~").split()))  # fmt: skip
        allowed = allowed - calls if deny else allowed | calls
    return allowed


def _accepts(path: Path) -> bool:
    """Whether a daemon listens at `path` (the file alone can exist before listen())."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


#: How long the daemon may take to start, or to stop, under strace.
STRACED_START_S = 120


@needs_systemd_analyze
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_the_daemon_and_its_embedded_redis_stay_inside_the_unit_syscall_filter(sock_dir, new_state):
    allowed = _unit_allows()
    trace, data, path = sock_dir / "trace", sock_dir / "data", sock_dir / "d.sock"
    command = [sys.executable, "-m", "drawstated", "--socket", str(path), "--data-dir", str(data),
               "--metrics-port", "0", "--log-format", "json"]  # fmt: skip
    with open(sock_dir / "daemon.log", "wb") as log:
        tracer = subprocess.Popen(["strace", "-f", "-qq", "-o", str(trace), *command], stderr=log)
    try:
        # Under strace on two shared cores start-up can take tens of seconds: a wide margin, but fail at
        # once if the traced daemon exits.
        # The socket file appears at bind(), before listen(): wait until it accepts a connection.
        wait_until(lambda: _accepts(path) or tracer.poll() is not None, timeout=STRACED_START_S)
        assert _accepts(path), (sock_dir / "daemon.log").read_text()[-2000:]
        daemon_pid = int((data / "drawstated.lock").read_text())
        state = new_state(lock_key="filter:player")
        with Client(path, timeout=10) as client:
            client.save(state)
            assert client.load("filter:player") is not None
            client.rollback(state, reason="syscall filter test")
        port = next(
            json.loads(line)["port"]
            for line in (sock_dir / "daemon.log").read_text().splitlines()
            if '"metrics served"' in line
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            assert b"drawstate_requests_total" in reply.read()
        os.kill(daemon_pid, signal.SIGTERM)
        assert tracer.wait(STRACED_START_S) == 0
    finally:
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    used = set(re.findall(r"^\d+\s+(?:<\.\.\. )?([a-z][a-z0-9_]*)[( ]", trace.read_text(), re.MULTILINE))
    assert {"flock", "prlimit64", "execve"} <= used  # the trace saw the locks, the fd limit, redis-server
    assert used - allowed == set()
    # MemoryDenyWriteExecute: no writable+executable mapping, no mapping made executable later.
    assert not re.search(r"mmap\([^)]*PROT_WRITE\|PROT_EXEC|mprotect\([^)]*PROT_EXEC", trace.read_text())
