"""The daemon as a real process: signals, the command line, the embedded Redis."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from drawstate import Client
from drawstate.protocol import encode_frame
from tests.support.daemon import DaemonProcess
from tests.support.waiting import wait_until
from tests.support.wire import RawPeer


def _cli(sock, *args, timeout=20):
    return subprocess.run(
        [sys.executable, "-c", "from drawstated.cli import main; main()", *args],
        env={**os.environ, "DRAWSTATE_SOCKET": str(sock)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def daemon_process(sock_dir, own_redis):
    proc = DaemonProcess(
        sock_dir / "d.sock", ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")]
    )
    yield proc
    proc.stop()


def test_sigterm_answers_every_request_in_flight_and_removes_the_socket(daemon_process, own_redis, new_state):
    daemon_process.start()
    peer = RawPeer(daemon_process.socket_path, timeout=15)
    own_redis.pause()  # hold the requests in flight inside the daemon
    try:
        states = [new_state(lock_key=f"term:{i}") for i in range(10)]
        peer.send_raw(b"".join(
            encode_frame({"id": i, "op": "save", "state": s.to_dict(), "deadline_ms": 10_000})
            for i, s in enumerate(states)
        ))  # fmt: skip
        with Client(daemon_process.socket_path, timeout=2) as probe:
            wait_until(lambda: probe.stats().in_flight >= 11)  # ten saves + this stats call
        daemon_process.terminate()
        wait_until(lambda: "stopping" in daemon_process.log())
    finally:
        own_redis.resume()
    replies = [peer.read() for _ in range(10)]
    assert sorted(r["id"] for r in replies) == list(range(10))
    assert all(r["ok"] for r in replies), replies
    assert daemon_process.wait() == 0
    assert not daemon_process.socket_path.exists()
    with own_redis.client() as rdb:
        assert rdb.dbsize() >= 10  # every answered save is in Redis
    peer.close()


def test_cli_ping_load_pending_rollback_stats(daemon_process, new_state):
    daemon_process.start()
    sock = daemon_process.socket_path
    state = new_state(lock_key="cli:player", completed_count=1, results=[8])
    with Client(sock) as client:
        client.save(state)

    ping = _cli(sock, "ping")
    assert ping.returncode == 0 and "redis up" in ping.stdout

    loaded = _cli(sock, "load", "cli:player")
    assert loaded.returncode == 0
    assert json.loads(loaded.stdout)["operation_id"] == state.operation_id
    assert _cli(sock, "load", "cli:nobody").returncode == 1

    listed = _cli(sock, "pending", "--json")
    assert [item["operation_id"] for item in json.loads(listed.stdout)] == [state.operation_id]
    human = _cli(sock, "pending")
    assert "cli:player" in human.stdout and "1/10" in human.stdout

    rolled = _cli(sock, "rollback", "cli:player", state.operation_id, "--reason", "support ticket 7")
    assert rolled.returncode == 0
    assert json.loads(rolled.stdout)["state"]["results"] == [8]

    stats = _cli(sock, "stats", "--json")
    assert json.loads(stats.stdout)["requests"]["rollback"]["ok"] == 1
    assert "redis: up" in _cli(sock, "stats").stdout


def test_cli_ping_fails_when_no_daemon_listens(sock_dir):
    result = _cli(sock_dir / "nobody.sock", "ping", "--timeout", "0.5")
    assert result.returncode == 3
    assert "sidecar_unavailable" in result.stderr


def test_socket_is_not_world_accessible(daemon_process):
    daemon_process.start()
    mode = stat.S_IMODE(os.stat(daemon_process.socket_path).st_mode)
    assert mode == 0o660


def test_second_daemon_on_the_same_socket_refuses_to_start(daemon_process, own_redis, sock_dir):
    daemon_process.start()
    other = DaemonProcess(
        daemon_process.socket_path, ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data2")]
    )
    other.log_path = sock_dir / "other.log"
    other.start(wait=False)
    assert other.wait(20) == 1
    assert f"in use by drawstate daemon pid {daemon_process.proc.pid}" in other.log()
    with Client(daemon_process.socket_path) as client:
        assert client.ping().redis == "up"


def test_serve_without_url_runs_an_embedded_redis_with_aof(sock_dir, new_state):
    data = sock_dir / "data"
    proc = DaemonProcess(sock_dir / "d.sock", ["--data-dir", str(data)]).start()
    try:
        assert _cli(proc.socket_path, "ping").returncode == 0
        state = new_state()
        with Client(proc.socket_path) as client:
            client.save(state)
        assert (data / "redis.sock").exists()
        assert any(p.name.startswith("appendonly") for p in data.iterdir())
        redis_pid = int((data / "redis.pid").read_text())
    finally:
        proc.terminate()
        assert proc.wait() == 0
    wait_until(lambda: not _alive(redis_pid))  # stopped with the daemon

    again = DaemonProcess(sock_dir / "d.sock", ["--data-dir", str(data)]).start()
    try:
        with Client(again.socket_path) as client:
            assert client.load(state.lock_key, state.operation_id) is not None  # kept by the AOF
    finally:
        again.stop()


def test_a_given_redis_url_is_never_replaced_by_the_embedded_one(sock_dir):
    proc = DaemonProcess(
        sock_dir / "d.sock",
        ["--redis-url", f"unix://{sock_dir}/none.sock", "--data-dir", str(sock_dir / "data")],
    )
    proc.start()
    result = _cli(proc.socket_path, "ping")
    assert result.returncode == 1 and "redis down" in result.stdout
    assert not (sock_dir / "data" / "redis.sock").exists()
    proc.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_python_dash_m_drawstated_is_serve(sock_dir):
    result = subprocess.run(
        [sys.executable, "-m", "drawstated", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=20,
    )
    assert result.returncode == 0
    assert "--redis-url" in result.stdout


def _readme_examples() -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return [block.split("```", 1)[0] for block in readme.split("```python\n")[1:]]


def _run_example(code: str, socket_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DRAWSTATE_SOCKET": str(socket_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_readme_example_crashes_resumes_and_says_so(daemon_process):
    daemon_process.start()
    example = _readme_examples()[0].replace("client = Client()", "client = Client(timeout=5)")
    result = _run_example(example, daemon_process.socket_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["granted draw 1", "granted draw 2", "granted draw 3"]
    assert lines[3].startswith("resuming at draw 4 - already granted: [")
    assert lines[4:11] == [f"granted draw {i}" for i in range(4, 11)]
    assert lines[11] == "completed: complete"


def test_the_readme_asyncio_example_runs_a_thousand_pulls(daemon_process):
    daemon_process.start()
    example = _readme_examples()[1].replace("AsyncClient()", "AsyncClient(timeout=30)")
    result = _run_example(example, daemon_process.socket_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1000 ten-pulls saved draw by draw"


def test_json_log_format_writes_one_json_object_per_line(sock_dir, own_redis):
    proc = DaemonProcess(
        sock_dir / "d.sock",
        ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data"), "--log-format", "json"],
        env={"DRAWSTATE_REDIS_PASSWORD": "hunter2-secret"},
    ).start()
    proc.terminate()
    assert proc.wait() == 0
    lines = [json.loads(line) for line in proc.log().splitlines() if line.strip()]
    assert {"ts", "level", "logger", "msg"} <= set(lines[0])
    assert any(line["msg"] == "ready" for line in lines)
    assert "hunter2-secret" not in proc.log()


def test_the_raw_protocol_reference_client_runs(daemon_process):
    daemon_process.start()
    script = Path(__file__).resolve().parents[2] / "examples" / "raw_protocol.py"
    result = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "DRAWSTATE_SOCKET": str(daemon_process.socket_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "operation_closed" in result.stdout
