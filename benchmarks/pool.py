"""Load-generating worker processes: fork them, hand them commands, gather replies, never leave one behind.

Each worker is a forked process with one pipe to the parent. A command names a
handler (a generator function); every value it yields goes back as one reply,
so a long command can report block by block. Workers ignore SIGINT (the parent
handles Ctrl-C and kills them), die with the parent (PR_SET_PDEATHSIG), and
run with a 1 ns timer slack so a paced sleep wakes when asked, not up to 50 µs late.

Workers are forked before the parent starts any thread (the RSS sampler), so
fork never copies a lock held by another thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.targets import Target, open_target
from drawstated.server.embedded import die_with_parent

_PR_SET_TIMERSLACK = 29
JOIN_TIMEOUT_S = 5.0
#: How long gather() waits between liveness checks of the workers.
POLL_S = 0.5


class WorkerFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Endpoints:
    """Where the workers send load: the daemon's socket and the Redis it uses (a cluster's seeds)."""

    socket_path: str
    redis_url: str
    prefix: str
    cluster_seeds: tuple[str, ...] = ()


@dataclass
class WorkerContext:
    index: int
    endpoints: Endpoints
    targets: dict[str, Target] = field(default_factory=dict)

    def target(self, name: str) -> Target:
        """The worker's connection to `name` ("sidecar" or "direct"), opened once."""
        if name not in self.targets:
            e = self.endpoints
            self.targets[name] = open_target(name, e.socket_path, e.redis_url, e.prefix, e.cluster_seeds)
        return self.targets[name]


Handler = Callable[..., Iterator[Any]]


def prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, value)


def _worker_main(conn: Connection, index: int, endpoints: Endpoints, handlers: Mapping[str, Handler]) -> None:
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's clean-up handler
    die_with_parent(signal.SIGKILL)
    prctl(_PR_SET_TIMERSLACK, 1)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    context = WorkerContext(index, endpoints)
    try:
        while True:
            message = conn.recv()
            if message is None:
                return
            name, params = message
            try:
                for reply in handlers[name](context, **params):
                    conn.send(("ok", reply))
            except Exception:  # report it to the parent, which raises WorkerFailed
                conn.send(("error", traceback.format_exc()))
    except (EOFError, BrokenPipeError):
        return  # the parent went away
    finally:
        for target in context.targets.values():
            with contextlib.suppress(Exception):
                target.close()


class WorkerPool:
    """`count` forked workers; a context manager that always reaps them."""

    def __init__(self, count: int, endpoints: Endpoints, handlers: Mapping[str, Handler]) -> None:
        self.count = count
        self.endpoints = endpoints
        self.handlers = handlers
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[Connection] = []

    def __enter__(self) -> WorkerPool:
        context = multiprocessing.get_context("fork")
        try:
            for index in range(self.count):
                parent_end, child_end = context.Pipe()
                proc = context.Process(
                    target=_worker_main,
                    args=(child_end, index, self.endpoints, self.handlers),
                    name=f"bench-worker-{index}",
                    daemon=True,
                )
                proc.start()
                child_end.close()
                self._procs.append(proc)
                self._conns.append(parent_end)
        except BaseException:
            self.close(graceful=False)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.close(graceful=exc_type is None)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs if proc.pid is not None]

    def send(self, command: str, params: list[dict[str, Any]] | dict[str, Any]) -> None:
        """Send `command` to every worker: the same params, or one dict per worker."""
        per_worker = params if isinstance(params, list) else [params] * self.count
        for conn, worker_params in zip(self._conns, per_worker, strict=True):
            conn.send((command, worker_params))

    def gather(self) -> list[Any]:
        """The next reply of every worker, in worker order."""
        replies = []
        for proc, conn in zip(self._procs, self._conns, strict=True):
            while not conn.poll(POLL_S):
                if not proc.is_alive():
                    raise WorkerFailed(f"{proc.name} exited with {proc.exitcode}")
            status, payload = conn.recv()
            if status == "error":
                raise WorkerFailed(f"{proc.name} failed:\n{payload}")
            replies.append(payload)
        return replies

    def run(self, command: str, params: list[dict[str, Any]] | dict[str, Any]) -> list[Any]:
        self.send(command, params)
        return self.gather()

    def close(self, *, graceful: bool = True) -> None:
        """Ask the workers to exit; terminate, then kill, whoever does not."""
        for conn in self._conns:
            with contextlib.suppress(OSError):
                if graceful:
                    conn.send(None)
                conn.close()
        for proc in self._procs:
            if graceful:
                proc.join(JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.terminate()
                proc.join(JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs.clear()
        self._conns.clear()
