"""Auto-pipelining: commands submitted in the same loop tick go to Redis in one write.

A lone command is flushed at the end of its tick, with no batching delay. The
batch goes to the least busy of a few connections (opened on demand, reopened
after a failure), so batches grow exactly when Redis is the bottleneck.

A command may ask for replica acknowledgement (`wait=Wait(replicas, timeout_ms)`):
the batch then ends with one WAIT on the same connection, which covers every
write before it, and such a command's result is `(reply, replicas_acked)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from drawstated.redis.resp import Endpoint, RespConnection, close_quietly, connect, pack_command

log = logging.getLogger("drawstated.redis.pipeline")

Command = tuple[Any, ...]


class Wait(NamedTuple):
    """Replica acknowledgement a write asks for: WAIT <replicas> <timeout_ms> after it."""

    replicas: int
    timeout_ms: int


class _Item(NamedTuple):
    """One submitted command: what to send, where its reply goes, the WAIT it asks for."""

    command: Command
    future: asyncio.Future[Any]
    wait: Wait | None


class Resolver(Protocol):
    """Where the next connection goes; asked for every connection opened."""

    async def __call__(self) -> Endpoint: ...

    async def aclose(self) -> None: ...


class FixedEndpoint:
    """A Resolver for one known server."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self) -> Endpoint:
        return self.endpoint

    async def aclose(self) -> None:
        return None


class Backend(Protocol):
    """What the store needs from Redis: AutoPipeline (one server) or ClusterRouter (many)."""

    def submit(self, *command: Any, wait: Wait | None = None) -> asyncio.Future[Any]: ...

    def submit_to(self, node_index: int, *command: Any) -> asyncio.Future[Any]: ...

    async def scan_node_count(self) -> int: ...

    async def close(self) -> None: ...


class AutoPipeline:
    """Batches commands per loop tick over a small pool of lean Redis connections."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        size: int,
        connect_timeout_s: float,
        stall_timeout_s: float,
        on_batch: Callable[[int], None] | None = None,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        #: Where to connect, asked anew for every connection (Sentinel: the current master).
        self.resolve = resolve
        self._size = size
        self._connect_timeout_s = connect_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._on_batch = on_batch
        self._on_connect = on_connect
        self._conns: list[RespConnection] = []
        self._opened: set[RespConnection] = set()  # also retired ones, to close them all at the end
        self._connecting: asyncio.Task[RespConnection] | None = None
        self._queue: list[_Item] = []
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, *command: Any, wait: Wait | None = None) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply, or the reply's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(_Item(command, future, wait))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def submit_to(self, node_index: int, *command: Any) -> asyncio.Future[Any]:
        """For one node of the topology: a standalone server is node 0, the only one."""
        return self.submit(*command)

    async def scan_node_count(self) -> int:
        return 1

    def _flush(self) -> None:
        self._flush_scheduled = False
        # Requests that gave up (deadline) while queued are not sent at all.
        batch = [item for item in self._queue if not item.future.done()]
        self._queue = []
        if not batch:
            return
        conn = self._pick()
        if conn is None:
            task = asyncio.get_running_loop().create_task(self._send_when_connected(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._send(conn, batch)

    def _pick(self) -> RespConnection | None:
        """The least busy live connection; opens another while all are busy and the pool has room."""
        for conn in self._conns:
            if conn.demoted and not conn.lost:
                conn.retire()
        self._conns = [conn for conn in self._conns if conn.usable]
        best = min(self._conns, key=lambda conn: conn.outstanding, default=None)
        if (best is None or best.outstanding) and len(self._conns) < self._size:
            self._open_one()
        return best

    def _open_one(self) -> asyncio.Task[RespConnection]:
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._open())
            self._connecting.add_done_callback(_retrieved)
        return self._connecting

    async def _open(self) -> RespConnection:
        try:
            conn = await connect(
                await self.resolve(),
                connect_timeout_s=self._connect_timeout_s,
                stall_timeout_s=self._stall_timeout_s,
            )
        finally:
            self._connecting = None
        self._conns.append(conn)
        self._opened = {c for c in self._opened if not c.lost}
        self._opened.add(conn)
        if self._on_connect is not None:
            self._on_connect()
        log.debug("redis connection opened", extra={"pool": len(self._conns)})
        return conn

    async def _send_when_connected(self, batch: list[_Item]) -> None:
        try:
            conn = await asyncio.shield(self._open_one())
        except asyncio.CancelledError:  # close(): the daemon is stopping
            for item in batch:
                item.future.cancel()
            raise
        except Exception as exc:  # refused, timed out: every caller retries on its own deadline
            _fail(batch, exc)
            return
        self._send(conn, [item for item in batch if not item.future.done()])

    def _send(self, conn: RespConnection, batch: list[_Item]) -> None:
        if not batch:
            return
        if self._on_batch is not None:
            self._on_batch(len(batch))
        packed = b"".join([pack_command(item.command) for item in batch])
        waits = [item.wait for item in batch if item.wait is not None]
        if not waits:
            futures: list[asyncio.Future[Any]] = [item.future for item in batch]
        else:
            # One WAIT for the batch: the most replicas anyone asked for, the longest timeout.
            replicas = max(wait.replicas for wait in waits)
            packed += pack_command(("WAIT", replicas, max(wait.timeout_ms for wait in waits)))  # type: ignore[arg-type]
            futures = self._with_wait(batch)
        try:
            conn.send(packed, futures)
        except Exception as exc:
            _fail(batch, exc)

    def _with_wait(self, batch: list[_Item]) -> list[asyncio.Future[Any]]:
        """Reply futures for a batch ending in WAIT: waiting items get (reply, acked) when it answers."""
        loop = asyncio.get_running_loop()
        replies = [loop.create_future() if item.wait else item.future for item in batch]
        acked: asyncio.Future[Any] = loop.create_future()

        def deliver(done: asyncio.Future[Any]) -> None:
            acked_error = acked.exception()
            for item, reply in zip(batch, replies, strict=True):
                if item.wait is None:
                    continue
                error = reply.exception() or acked_error  # read even if unused: no "never retrieved"
                if item.future.done():
                    continue
                if error is not None:
                    item.future.set_exception(error)
                else:
                    item.future.set_result((reply.result(), int(acked.result())))

        acked.add_done_callback(deliver)
        return [*replies, acked]

    async def close(self) -> None:
        """Close the connections; commands still queued fail as the daemon is stopping."""
        for item in self._queue:
            if not item.future.done():
                item.future.cancel()
        self._queue = []
        for task in list(self._tasks):
            task.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        for conn in self._opened | set(self._conns):
            await close_quietly(conn)
        self._conns, self._opened = [], set()
        await self.resolve.aclose()


def _fail(batch: list[_Item], exc: BaseException) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A background connect's failure is read here: its callers get it (or retry), not the log."""
    if not task.cancelled():
        task.exception()
