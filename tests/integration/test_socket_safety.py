"""The default socket directory cannot be squatted, a file at --socket is never deleted, data is private.

A squatter is played for real: a 0777 directory, or one chowned to another uid
(the tests run as root where they can chown), at the default socket path the
daemon and the client compute from $XDG_RUNTIME_DIR, with the squatter's own
listener inside, which must never receive a connection.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest
import uvloop

from drawstate import Client, SidecarUnavailable
from drawstate.aio import AsyncClient
from drawstate.paths import SOCKET_ENV, SOCKET_NAME
from drawstated.server.startup import EXIT_NOT_A_SOCKET, EXIT_UNSAFE_SOCKET_DIR
from tests.support.daemon import DaemonProcess
from tests.support.serve import one_line, serve_once
from tests.support.waiting import wait_until

#: An unprivileged uid to own the squatted directory ("nobody" on Debian).
OTHER_UID = 65534


def _squat(directory: Path, *, mode: int, owner: int | None = None) -> socket.socket:
    """The squatter's directory at the default path, with their socket listening in it."""
    directory.mkdir()
    os.chmod(directory, mode)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(directory / SOCKET_NAME))
    listener.listen(8)
    listener.setblocking(False)
    if owner is not None:
        os.chown(directory, owner, owner)
    return listener


def _nobody_connected(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
    except BlockingIOError:
        return True
    return False


SQUATS = [
    pytest.param({"mode": 0o777}, "mode 0777", id="world-writable"),
    pytest.param({"mode": 0o700, "owner": OTHER_UID}, f"owned by uid {OTHER_UID}", id="other-owner"),
]


@pytest.mark.parametrize(("squat", "reason"), SQUATS)
def test_a_squatted_default_socket_dir_is_refused_by_the_daemon(sock_dir, squat, reason):
    if "owner" in squat and os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    runtime = sock_dir / "run"
    listener = _squat(runtime, **squat)
    try:
        result = serve_once("--data-dir", str(sock_dir / "data"), env={"XDG_RUNTIME_DIR": str(runtime)})
        assert result.returncode == EXIT_UNSAFE_SOCKET_DIR
        assert reason in one_line(result.stderr)
        assert sorted(p.name for p in runtime.iterdir()) == [SOCKET_NAME]  # no lock file, socket untouched
        assert _nobody_connected(listener)
    finally:
        listener.close()


def _squatted_default_dir(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch, squat: dict[str, Any]
) -> tuple[Path, socket.socket]:
    """A squatter's directory where a client looks by default (XDG_RUNTIME_DIR, no DRAWSTATE_SOCKET)."""
    if "owner" in squat and os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    runtime = sock_dir / "run"
    listener = _squat(runtime, **squat)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv(SOCKET_ENV, raising=False)
    return runtime, listener


@pytest.mark.parametrize(("squat", "reason"), SQUATS)
def test_a_squatted_default_socket_dir_is_refused_by_the_client(sock_dir, monkeypatch, squat, reason):
    runtime, listener = _squatted_default_dir(sock_dir, monkeypatch, squat)
    try:
        with Client(timeout=2) as client, pytest.raises(SidecarUnavailable, match=reason):
            client.ping()
        assert _nobody_connected(listener)
        # A path given explicitly is the operator's choice: the same socket is then reached.
        with Client(runtime / SOCKET_NAME, timeout=0.2) as explicit, pytest.raises(SidecarUnavailable):
            explicit.ping()  # the squatter never answers; what matters is that it was reached
        assert not _nobody_connected(listener)
    finally:
        listener.close()


@pytest.mark.parametrize("run", [asyncio.run, uvloop.run], ids=["asyncio", "uvloop"])
@pytest.mark.parametrize(("squat", "reason"), SQUATS)
def test_a_squatted_default_socket_dir_is_refused_by_the_async_client(
    sock_dir, monkeypatch, squat, reason, run
):
    runtime, listener = _squatted_default_dir(sock_dir, monkeypatch, squat)

    async def refused() -> None:
        async with AsyncClient(timeout=2) as client:
            with pytest.raises(SidecarUnavailable, match=reason):
                await client.ping()

    async def explicit() -> None:
        # A path given explicitly is the operator's choice: the same socket is then reached.
        async with AsyncClient(runtime / SOCKET_NAME, timeout=0.2) as client:
            with pytest.raises(SidecarUnavailable):
                await client.ping()  # the squatter never answers; what matters is that it was reached

    try:
        run(refused())
        assert _nobody_connected(listener)
        run(explicit())
        assert not _nobody_connected(listener)
    finally:
        listener.close()


def test_daemon_and_client_use_a_default_dir_they_create_0700(sock_dir, monkeypatch, own_redis):
    runtime = sock_dir / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv(SOCKET_ENV, raising=False)
    proc = DaemonProcess(
        runtime / SOCKET_NAME, ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data")]
    )
    proc.log_path = sock_dir / "daemon.log"  # not in the dir the daemon must create
    proc.start()  # its --socket is the default path itself, so it is checked as the default
    try:
        assert stat.S_IMODE(runtime.stat().st_mode) == 0o700
        with Client(timeout=5) as client:  # the default path, checked and found safe
            assert client.ping().redis == "up"
    finally:
        proc.stop()


def test_a_regular_file_at_socket_is_refused_and_never_deleted(sock_dir):
    path = sock_dir / "game.sock"
    path.write_text("not a socket: someone's file\n")
    result = serve_once("--socket", str(path), "--data-dir", str(sock_dir / "data"))
    assert result.returncode == EXIT_NOT_A_SOCKET
    assert "not a socket" in one_line(result.stderr)
    assert path.read_text() == "not a socket: someone's file\n"


def test_the_daemon_creates_its_data_dir_0700_and_every_file_in_it_private(sock_dir, new_state):
    data = sock_dir / "state" / "data"
    proc = DaemonProcess(sock_dir / "d.sock", ["--data-dir", str(data)]).start()  # embedded Redis
    try:
        with Client(proc.socket_path, timeout=5) as client:
            client.save(new_state())
        wait_until(lambda: any(p.name.startswith("appendonly") for p in data.rglob("*")))
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        modes = {str(p): stat.S_IMODE(p.stat().st_mode) for p in data.rglob("*") if p.is_file()}
        assert modes and all(mode & 0o077 == 0 for mode in modes.values()), modes
    finally:
        proc.stop()
