"""Run a real drawstate daemon for tests: in a thread (fast, inspectable) or as a process.

The thread runs the same Server class on its own uvloop loop; the process runs
`python -m drawstated`, for signals and the command line.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import uvloop

from drawstate import Client
from drawstated.config import Config
from drawstated.server.process import Server

START_TIMEOUT_S = 15.0


class DaemonThread:
    """A Server on a private event loop in a background thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="drawstated", daemon=True)

    def _run(self) -> None:
        self.loop = uvloop.new_event_loop()
        try:
            self.loop.run_until_complete(self.server.serve())
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def start(self) -> DaemonThread:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started.is_set():
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"daemon failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not start in time")
            time.sleep(0.005)
        return self

    def call(self, fn: Any) -> Any:
        """Run `fn()` on the daemon's loop and return its result (to inspect internals)."""
        assert self.loop is not None

        async def wrapper() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(5)

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.request_stop)
        self._thread.join(30)
        if self.error is not None:
            raise self.error

    def client(self, **kwargs: Any) -> Client:
        return Client(self.config.socket_path, **kwargs)


class DaemonProcess:
    """`python -m drawstated` as a child process; its log goes to `log_path`."""

    def __init__(self, socket_path: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        self.socket_path = socket_path
        self.args = args
        self.log_path = socket_path.parent / "daemon.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> DaemonProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115  # closed by the child's exit
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "drawstated", "--socket", str(self.socket_path), *self.args],
            stdout=log,
            stderr=log,
            env=self.env,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log()[-3000:]}")
            if self.socket_path.exists():
                try:
                    with Client(self.socket_path, timeout=1) as client:
                        client.ping()
                        return
                except Exception:  # not up yet: poll again
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"daemon did not start: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
