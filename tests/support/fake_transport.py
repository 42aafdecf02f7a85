"""A fake asyncio transport under a RespConnection, for unit tests of the daemon's own Redis protocol code.

Everything else in the suite talks to real redis-server processes; a fake is fine here because what
these tests pin is pure protocol bookkeeping of our own (FIFO futures, split replies, demotion, the
stall timer, per-tick batching, slot routing), decided by the bytes that come in and the calls that
go out. A fake makes every byte boundary and every ordering reachable in milliseconds, the way
uvicorn tests its protocols with a mock transport. How the same code behaves against a live server
(failovers, real sockets, real timeouts) is covered by the integration and chaos tests.

Like asyncio's own transports, `close()` and `abort()` call the protocol's `connection_lost(None)`
on the next loop iteration, once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from drawstated.redis.resp import RespConnection

#: How long a test waits for bytes it expects to be written: generous, as the machine is shared.
WRITE_WAIT_S = 2.0


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes and whether it closed or aborted the connection."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()
        self._closing = False
        self._wrote = asyncio.Event()
        #: Every `write` call's bytes, in order: one entry per write, so batching is visible.
        self.writes: list[bytes] = []
        self.close_calls = 0
        self.abort_calls = 0

    @property
    def aborted(self) -> bool:
        """Whether the protocol aborted the connection (its connection_lost may abort it again)."""
        return self.abort_calls > 0

    @property
    def written(self) -> bytes:
        """All bytes written so far."""
        return b"".join(self.writes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        self._wrote.set()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self.close_calls += 1
        self._shut()

    def abort(self) -> None:
        self.abort_calls += 1
        self._shut()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol  # type: ignore[assignment]

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def _shut(self) -> None:
        if not self._closing:
            self._closing = True
            self._loop.call_soon(self._protocol.connection_lost, None)

    async def wait_for_writes(self, count: int, timeout_s: float = WRITE_WAIT_S) -> list[bytes]:
        """Wait (on the write event, not a sleep) until `count` writes were made; returns them."""
        async with asyncio.timeout(timeout_s):
            while len(self.writes) < count:
                self._wrote.clear()
                await self._wrote.wait()
        return self.writes


def open_connection(stall_timeout_s: float = 30.0) -> tuple[RespConnection, FakeTransport]:
    """A RespConnection attached to a fresh FakeTransport (call from a running loop)."""
    conn = RespConnection(stall_timeout_s)
    transport = FakeTransport(conn)
    conn.connection_made(transport)
    return conn, transport
