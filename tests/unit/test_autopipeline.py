"""drawstated.redis.pipeline.AutoPipeline over fake transports: what goes out in which write, and to whom.

Batching is where a reply could reach the wrong caller or a WAIT could cover the wrong writes, and
a live Redis answers too fast to show which tick a command left in. Here `connect` hands out
RespConnections on fake transports, so each write, each connection opened and each reply is
visible and driven by hand; the integration tests run the same pipeline against real servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from drawstated.redis import errors, pipeline
from drawstated.redis.pipeline import AutoPipeline, FixedEndpoint, Wait
from drawstated.redis.resp import Endpoint, RespConnection, pack_command
from tests.support.fake_transport import WRITE_WAIT_S, FakeTransport, open_connection

#: The pool bound the tests run with: enough to see a second connection open, and the bound hold.
POOL_SIZE = 2
#: A bound on waiting for a future the code under test must settle; never reached when it works.
SETTLE_S = 2.0


class FakeConnector:
    """Stands in for resp.connect: every connection it opens sits on a FakeTransport the test reads."""

    def __init__(self) -> None:
        self.opened: list[tuple[RespConnection, FakeTransport]] = []
        #: Set to make the next connects fail with it (a refused or timed-out connection).
        self.error: Exception | None = None
        #: Set to hold connects until it is set (a connection still being opened).
        self.gate: asyncio.Event | None = None
        self._changed = asyncio.Event()

    async def __call__(self, endpoint: Endpoint, *, connect_timeout_s: float, stall_timeout_s: float) -> Any:
        # A real connect always waits for the network at least once; completing in the same step
        # would let the pool's waiting task miss the connect in flight and open a second one.
        await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        conn, transport = open_connection(stall_timeout_s)
        self.opened.append((conn, transport))
        self._changed.set()
        return conn

    def transport(self, index: int) -> FakeTransport:
        return self.opened[index][1]

    def conn(self, index: int) -> RespConnection:
        return self.opened[index][0]

    async def wait_opened(self, count: int) -> None:
        async with asyncio.timeout(WRITE_WAIT_S):
            while len(self.opened) < count:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def connector(monkeypatch: pytest.MonkeyPatch) -> FakeConnector:
    fake = FakeConnector()
    monkeypatch.setattr(pipeline, "connect", fake)
    return fake


@pytest.fixture
async def pipe(connector: FakeConnector) -> AsyncIterator[AutoPipeline]:
    auto = AutoPipeline(
        FixedEndpoint(Endpoint(host="127.0.0.1", port=1)),
        size=POOL_SIZE,
        connect_timeout_s=1.0,
        stall_timeout_s=30.0,
    )
    yield auto
    await auto.close()


async def next_tick() -> None:
    """Let every callback already scheduled run (the pipeline flushes with call_soon)."""
    tick = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(tick.set_result, None)
    await tick


def packed(*commands: tuple[Any, ...]) -> bytes:
    return b"".join(pack_command(command) for command in commands)


async def warm(pipe: AutoPipeline, connector: FakeConnector) -> FakeTransport:
    """Open the pool's first connection with one answered PING; returns its transport."""
    future = pipe.submit("PING")
    await connector.wait_opened(1)
    transport = connector.transport(0)
    await transport.wait_for_writes(1)
    connector.conn(0).data_received(b"+PONG\r\n")
    assert await asyncio.wait_for(future, SETTLE_S) == b"PONG"
    return transport


async def test_commands_submitted_in_one_tick_go_out_in_one_write_in_submission_order(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    commands = [("SET", "a", 1), ("GET", "b"), ("INCR", "c")]
    futures = [pipe.submit(*command) for command in commands]
    await connector.wait_opened(1)
    transport = connector.transport(0)
    assert await transport.wait_for_writes(1) == [packed(*commands)]
    connector.conn(0).data_received(b"+OK\r\n$1\r\nx\r\n:3\r\n")
    assert [await asyncio.wait_for(f, SETTLE_S) for f in futures] == [b"OK", b"x", 3]
    assert len(connector.opened) == 1


async def test_a_batch_on_an_open_connection_is_one_write_too(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    transport = await warm(pipe, connector)
    pipe.submit("GET", "a")
    pipe.submit("GET", "b")
    await next_tick()
    assert transport.writes[1:] == [packed(("GET", "a"), ("GET", "b"))]


async def test_a_lone_command_is_flushed_at_the_end_of_its_tick_not_before(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    transport = await warm(pipe, connector)
    future = pipe.submit("GET", "k")
    assert len(transport.writes) == 1  # submit only queues: later commands of this tick may join
    await next_tick()
    assert transport.writes[1:] == [packed(("GET", "k"))]
    connector.conn(0).data_received(b"$1\r\nv\r\n")
    assert future.result() == b"v"


async def test_a_batch_with_waits_ends_in_one_wait_for_the_most_replicas_and_the_longest_timeout(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    transport = await warm(pipe, connector)
    first = pipe.submit("SET", "a", 1, wait=Wait(1, 500))
    plain = pipe.submit("GET", "b")
    second = pipe.submit("SET", "c", 2, wait=Wait(2, 100))
    await next_tick()
    expected = packed(("SET", "a", 1), ("GET", "b"), ("SET", "c", 2), ("WAIT", 2, 500))
    assert transport.writes[1:] == [expected]
    assert transport.written.count(b"WAIT") == 1
    connector.conn(0).data_received(b"+OK\r\n$1\r\nB\r\n+OK\r\n")
    assert plain.result() == b"B"
    assert not first.done()  # a waiting write is answered only once WAIT says how many acked
    connector.conn(0).data_received(b":1\r\n")
    assert await asyncio.wait_for(first, SETTLE_S) == (b"OK", 1)
    assert await asyncio.wait_for(second, SETTLE_S) == (b"OK", 1)


async def test_a_waiting_write_that_failed_gets_its_own_error_not_a_tuple(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    await warm(pipe, connector)
    failed = pipe.submit("EVALSHA", "ab", 1, "k", wait=Wait(1, 100))
    ok = pipe.submit("SET", "c", 2, wait=Wait(1, 100))
    await next_tick()
    connector.conn(0).data_received(b"-NOSCRIPT No matching script.\r\n+OK\r\n:0\r\n")
    with pytest.raises(errors.NoScriptError):
        await asyncio.wait_for(failed, SETTLE_S)
    assert await asyncio.wait_for(ok, SETTLE_S) == (b"OK", 0)


async def test_a_batch_without_waits_sends_no_wait(pipe: AutoPipeline, connector: FakeConnector) -> None:
    transport = await warm(pipe, connector)
    pipe.submit("SET", "a", 1)
    await next_tick()
    assert b"WAIT" not in transport.written


async def test_a_command_cancelled_before_the_flush_is_not_sent(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    transport = await warm(pipe, connector)
    gave_up = pipe.submit("SET", "gone", 1, wait=Wait(1, 100))
    kept = pipe.submit("GET", "kept")
    gave_up.cancel()
    await next_tick()
    assert transport.writes[1:] == [packed(("GET", "kept"))]  # and no WAIT: nobody left asks for one
    connector.conn(0).data_received(b"$1\r\nk\r\n")
    assert kept.result() == b"k"


async def test_a_command_cancelled_while_its_batch_waits_for_a_connection_is_not_sent(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    connector.gate = asyncio.Event()
    gave_up = pipe.submit("GET", "gone")
    kept = pipe.submit("GET", "kept")
    await next_tick()  # flushed: the batch waits for the connection being opened
    gave_up.cancel()
    connector.gate.set()
    await connector.wait_opened(1)
    assert await connector.transport(0).wait_for_writes(1) == [packed(("GET", "kept"))]
    connector.conn(0).data_received(b"$1\r\nk\r\n")
    assert await asyncio.wait_for(kept, SETTLE_S) == b"k"


async def test_a_batch_where_every_command_was_cancelled_writes_nothing(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    transport = await warm(pipe, connector)
    pipe.submit("GET", "a").cancel()
    await next_tick()
    assert transport.writes == [packed(("PING",))]


async def test_a_failed_connect_fails_every_command_of_the_batch_with_its_error(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    refused = RedisConnectionError("cannot connect to redis at 127.0.0.1:1: refused")
    connector.error = refused
    futures = [pipe.submit("GET", "a"), pipe.submit("SET", "b", 1, wait=Wait(1, 100))]
    for future in futures:
        with pytest.raises(RedisConnectionError) as raised:
            await asyncio.wait_for(future, SETTLE_S)
        assert raised.value is refused
    assert connector.opened == []


async def test_after_a_failed_connect_the_next_batch_connects_anew(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    connector.error = RedisConnectionError("refused")
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(pipe.submit("GET", "a"), SETTLE_S)
    connector.error = None
    await warm(pipe, connector)
    assert len(connector.opened) == 1


async def test_a_busy_connection_makes_the_pool_open_another_and_the_next_batch_goes_to_it(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    first_transport = await warm(pipe, connector)
    slow = pipe.submit("GET", "slow")
    await next_tick()  # to the only connection, which now owes a reply
    assert first_transport.writes[1:] == [packed(("GET", "slow"))]
    also = pipe.submit("GET", "also")
    await next_tick()  # still the busy one (the new one is not open yet), and a second is opened
    await connector.wait_opened(2)
    assert first_transport.writes[2:] == [packed(("GET", "also"))]
    fresh = pipe.submit("GET", "fresh")
    await next_tick()
    second_transport = connector.transport(1)
    assert second_transport.writes == [packed(("GET", "fresh"))]  # the less busy connection
    connector.conn(1).data_received(b"$1\r\nf\r\n")
    connector.conn(0).data_received(b"$1\r\ns\r\n$1\r\na\r\n")
    assert (slow.result(), also.result(), fresh.result()) == (b"s", b"a", b"f")


async def test_the_pool_opens_no_more_than_its_size(pipe: AutoPipeline, connector: FakeConnector) -> None:
    await warm(pipe, connector)
    pipe.submit("GET", "one")
    await next_tick()
    pipe.submit("GET", "two")
    await next_tick()
    await connector.wait_opened(POOL_SIZE)
    for i in range(3):  # every connection busy, the pool full: batches share them
        pipe.submit("GET", f"more{i}")
        await next_tick()
    await next_tick()
    assert len(connector.opened) == POOL_SIZE
    assert sum(conn.outstanding for conn, _ in connector.opened) == 5


async def test_a_demoted_connection_is_retired_and_a_new_one_takes_the_next_batch(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    old_transport = await warm(pipe, connector)
    refused = pipe.submit("SET", "a", 1)
    in_flight = pipe.submit("GET", "b")
    await next_tick()
    old = connector.conn(0)
    old.data_received(b"-READONLY You can't write against a read only replica.\r\n")
    assert isinstance(refused.exception(), errors.ReadOnlyError)
    after = pipe.submit("SET", "a", 1)
    await connector.wait_opened(2)
    new_transport = connector.transport(1)
    assert await new_transport.wait_for_writes(1) == [packed(("SET", "a", 1))]
    assert old_transport.writes[2:] == []  # nothing new on the demoted master
    assert old_transport.close_calls == 0  # it still owes GET b its reply
    old.data_received(b"$1\r\nb\r\n")
    assert in_flight.result() == b"b"
    assert old_transport.close_calls == 1
    connector.conn(1).data_received(b"+OK\r\n")
    assert after.result() == b"OK"


async def test_a_lost_connection_is_dropped_and_the_next_batch_reconnects(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    await warm(pipe, connector)
    connector.conn(0).connection_lost(ConnectionResetError("reset"))
    pipe.submit("GET", "k")
    await connector.wait_opened(2)
    assert await connector.transport(1).wait_for_writes(1) == [packed(("GET", "k"))]


async def test_close_cancels_queued_commands_and_closes_every_connection(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    transport = await warm(pipe, connector)
    queued = pipe.submit("GET", "never")
    await pipe.close()
    assert queued.cancelled()
    assert transport.close_calls == 1
    await next_tick()
    assert transport.writes == [packed(("PING",))]


async def test_close_fails_commands_sent_but_not_yet_answered(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    await warm(pipe, connector)
    in_flight = pipe.submit("GET", "k")
    await next_tick()
    await pipe.close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(in_flight, SETTLE_S)


async def test_close_settles_commands_waiting_for_a_connection(
    pipe: AutoPipeline, connector: FakeConnector
) -> None:
    connector.gate = asyncio.Event()  # the connect never completes
    waiting = pipe.submit("GET", "k")
    await next_tick()  # flushed: the batch now waits for the connection
    await pipe.close()
    await next_tick()
    assert waiting.done()


async def test_on_batch_reports_each_batch_size_once(connector: FakeConnector) -> None:
    sizes: list[int] = []
    auto = AutoPipeline(
        FixedEndpoint(Endpoint(host="127.0.0.1", port=1)),
        size=1,
        connect_timeout_s=1.0,
        stall_timeout_s=30.0,
        on_batch=sizes.append,
    )
    try:
        auto.submit("GET", "a")
        auto.submit("GET", "b")
        await connector.wait_opened(1)
        await connector.transport(0).wait_for_writes(1)
        auto.submit("GET", "c")
        await next_tick()
        assert sizes == [2, 1]
    finally:
        await auto.close()
