"""One asyncio connection to the daemon, shared by every task: requests pipelined, replies matched by id.

Each call writes its whole frame at once (one transport write) and waits on a future that the
reader task resolves when the reply with its id arrives, so replies may come in any order and
calls never wait for each other. A call that times out or is cancelled just stops waiting: its
late reply, if any, is read and dropped, and the connection stays in step for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

from drawstate.connection import no_daemon
from drawstate.errors import SidecarUnavailable
from drawstate.paths import unsafe_socket_dir
from drawstate.protocol import FrameBuffer, FrameError, decode_body, encode_frame

_RECV_CHUNK = 256 * 1024


class BadFrame(ConnectionError):
    """The daemon sent a frame that cannot be read: the stream is lost."""


class MultiplexedConnection:
    """A unix socket to the daemon carrying any number of requests at once."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_frame_bytes: int
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._frames = FrameBuffer(max_frame_bytes)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._closed: BaseException | None = None
        self._reading = asyncio.get_running_loop().create_task(self._read_replies(), name="drawstate-replies")

    @classmethod
    async def open(
        cls, path: str, default_dir: Path | None, max_frame_bytes: int, timeout: float
    ) -> MultiplexedConnection:
        if default_dir is not None and (problem := unsafe_socket_dir(default_dir)):
            raise SidecarUnavailable(f"refusing to connect to {path}: {problem}")
        try:
            async with asyncio.timeout(max(0.001, timeout)):
                reader, writer = await asyncio.open_unix_connection(path, limit=_RECV_CHUNK)
        except (OSError, TimeoutError) as exc:
            raise no_daemon(path, getattr(exc, "strerror", None) or "no answer") from exc
        return cls(reader, writer, max_frame_bytes)

    @property
    def closed(self) -> bool:
        """Whether this connection can no longer carry a request (the next call opens another)."""
        return self._closed is not None or self._writer.is_closing()

    async def request(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send `request` and wait for its reply (TimeoutError at `deadline`, ConnectionError if lost)."""
        if self._closed is not None:
            raise ConnectionResetError("connection closed") from self._closed
        if self._writer.is_closing():  # the peer went away; the reader has not seen it yet
            raise ConnectionResetError("connection closing")
        request_id = next(self._ids)
        request["id"] = request_id
        remaining = deadline - time.monotonic()
        request["deadline_ms"] = max(1, int(remaining * 1000))
        reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = reply
        try:
            try:
                self._writer.write(encode_frame(request))  # the whole frame in one write: never interleaved
            except RuntimeError as exc:  # uvloop: the transport closed under us
                raise ConnectionResetError(str(exc)) from exc
            async with asyncio.timeout(max(0.0, remaining)):
                await self._writer.drain()
                return await reply
        except ConnectionError as exc:  # a write found the daemon gone before the reader did
            if not reply.done():
                reply.cancel()  # this call raises exc itself: its future is never awaited
            if self._closed is None:
                self._fail_all(exc)  # so no later call is sent on it
            raise
        finally:
            self._waiting.pop(request_id, None)  # a late reply to it is dropped by the reader

    async def _read_replies(self) -> None:
        error: BaseException = ConnectionResetError("daemon closed the connection")
        try:
            while True:
                data = await self._reader.read(_RECV_CHUNK)
                if not data:
                    break
                self._frames.feed(data)
                for body in self._frames.frames():
                    self._deliver(decode_body(body))
        except FrameError as exc:
            error = BadFrame(f"bad frame from daemon: {exc}")
        except OSError as exc:
            error = exc
        finally:
            self._fail_all(error)

    def _deliver(self, reply: Any) -> None:
        if not isinstance(reply, dict):
            return
        request_id = reply.get("id")
        if request_id is None and not reply.get("ok"):
            # The daemon could not read an id (a frame too large): it answers all it can and closes.
            for each in self._waiting.values():
                if not each.done():
                    each.set_result(reply)
            return
        waiting = self._waiting.get(request_id) if type(request_id) is int else None
        if waiting is not None and not waiting.done():
            waiting.set_result(reply)

    def _fail_all(self, error: BaseException) -> None:
        self._closed = error
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(error)
        self._writer.close()

    async def close(self) -> None:
        self._reading.cancel()
        self._writer.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reading
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()
