"""drawstated.redis.resp.RespConnection on a fake transport: replies reach their callers, however chunked.

The connection's bookkeeping decides whether a reply reaches the caller that asked for it: FIFO
futures, replies split anywhere by TCP, callers that gave up, a server that stops being the master,
a peer that goes quiet. Here every byte boundary and ordering is driven by hand, in milliseconds;
the integration tests run the same code against real redis-server processes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse
from redis.exceptions import TimeoutError as RedisTimeoutError

from drawstated.redis import errors
from drawstated.redis.resp import RespConnection, pack_command
from tests.support.fake_transport import open_connection

#: A bound on waiting for a future the code under test must settle; never reached when it works.
SETTLE_S = 2.0
#: A stall timeout short enough to fire within the test, long enough to be a real timer.
TINY_STALL_S = 0.02
#: For the timer-restart test: a server that answers late, but well within the stall timeout.
PATIENT_STALL_S = 0.2
SLOW_ANSWER_S = 0.08

#: Replies of every RESP2 kind, back to back, and what each caller gets.
STREAM = (
    b"+OK\r\n"
    b":42\r\n"
    b"$5\r\nhello\r\n"
    b"$-1\r\n"
    b"*3\r\n$1\r\na\r\n:7\r\n*1\r\n$0\r\n\r\n"
    b"-ERR unknown command 'NOPE'\r\n"
    b"*-1\r\n"
)
EXPECTED: list[Any] = [b"OK", 42, b"hello", None, [b"a", 7, [b""]], "ERR unknown command 'NOPE'", None]


def waiting(conn: RespConnection, count: int) -> list[asyncio.Future[Any]]:
    """`count` callers waiting on `conn`, as AutoPipeline sends them (one write)."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(count)]
    conn.send(b"".join(pack_command(("PING",)) for _ in range(count)), futures)
    return futures


def outcome(future: asyncio.Future[Any]) -> Any:
    """A settled future's result, or its error's message (for comparing a whole stream at once)."""
    assert future.done()
    error = future.exception()
    return str(error) if error is not None else future.result()


async def test_replies_resolve_the_waiting_futures_in_the_order_they_were_sent() -> None:
    conn, _ = open_connection()
    first, second, third = waiting(conn, 3)
    conn.data_received(b":1\r\n")
    assert first.result() == 1
    assert not second.done() and not third.done()
    conn.data_received(b"$3\r\ntwo\r\n")
    conn.data_received(b"+three\r\n")
    assert (second.result(), third.result()) == (b"two", b"three")
    assert conn.outstanding == 0


async def test_several_replies_in_one_chunk_each_reach_their_own_caller() -> None:
    conn, _ = open_connection()
    futures = waiting(conn, len(EXPECTED))
    conn.data_received(STREAM)
    assert [outcome(f) for f in futures] == EXPECTED
    assert conn.usable


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
async def test_a_stream_cut_at_any_byte_still_parses(cut: int) -> None:
    conn, _ = open_connection()
    futures = waiting(conn, len(EXPECTED))
    conn.data_received(STREAM[:cut])
    complete = sum(f.done() for f in futures)
    conn.data_received(STREAM[cut:])
    assert [outcome(f) for f in futures] == EXPECTED
    assert complete < len(EXPECTED)  # the cut really left a reply unfinished
    assert conn.usable


async def test_a_stream_fed_one_byte_at_a_time_still_parses() -> None:
    conn, _ = open_connection()
    futures = waiting(conn, len(EXPECTED))
    for i in range(len(STREAM)):
        conn.data_received(STREAM[i : i + 1])
    assert [outcome(f) for f in futures] == EXPECTED


ERROR_REPLIES = {
    "MOVED 5290 127.0.0.1:7001": errors.MovedError,
    "ASK 5290 127.0.0.1:7002": errors.AskError,
    "NOSCRIPT No matching script. Please use EVAL.": errors.NoScriptError,
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL.": errors.BusyError,
    "ERR Error running script: user_script:3: boom": errors.ReplyError,
}


@pytest.mark.parametrize("message", ERROR_REPLIES, ids=lambda message: message.split()[0])
async def test_an_error_reply_fails_its_caller_with_the_typed_error_and_its_full_message(
    message: str,
) -> None:
    conn, _ = open_connection()
    failed, after = waiting(conn, 2)
    conn.data_received(f"-{message}\r\n".encode() + b"+OK\r\n")
    error = failed.exception()
    assert type(error) is ERROR_REPLIES[message]
    assert str(error) == message
    assert after.result() == b"OK"  # an error reply is one reply: the stream stays in step


async def test_errors_nested_in_an_array_are_typed_and_the_array_is_the_result() -> None:
    conn, _ = open_connection()
    (future,) = waiting(conn, 1)
    conn.data_received(b"*3\r\n+OK\r\n-MOVED 12 127.0.0.1:7001\r\n-WRONGTYPE Operation against a key\r\n")
    ok, moved, wrongtype = future.result()
    assert ok == b"OK"
    assert type(moved) is errors.MovedError
    assert (moved.slot, moved.target) == (12, "127.0.0.1:7001")
    assert type(wrongtype) is errors.ReplyError
    assert wrongtype.code == "WRONGTYPE"
    assert not conn.demoted


async def test_the_reply_of_a_caller_that_gave_up_is_dropped_and_the_next_caller_gets_its_own() -> None:
    conn, _ = open_connection()
    gave_up, next_one = waiting(conn, 2)
    gave_up.cancel()
    conn.data_received(b"$4\r\nmine\r\n")
    assert not next_one.done()  # the first reply was the cancelled caller's
    conn.data_received(b"$6\r\nyours!\r\n")
    assert next_one.result() == b"yours!"
    assert gave_up.cancelled()
    assert conn.outstanding == 0 and conn.usable


async def test_an_error_reply_of_a_caller_that_gave_up_is_dropped_too() -> None:
    conn, _ = open_connection()
    gave_up, next_one = waiting(conn, 2)
    gave_up.cancel()
    conn.data_received(b"-ERR late\r\n:2\r\n")
    assert next_one.result() == 2


async def test_a_reply_nobody_asked_for_fails_the_connection_and_aborts_it() -> None:
    conn, transport = open_connection()
    (asked,) = waiting(conn, 1)
    conn.data_received(b"+OK\r\n+UNASKED\r\n")
    assert asked.result() == b"OK"
    assert conn.lost and not conn.usable
    assert transport.abort_calls == 1
    with pytest.raises(RedisConnectionError):
        waiting(conn, 1)


async def test_malformed_bytes_raise_invalid_response_for_the_transport_to_abort_on() -> None:
    conn, _ = open_connection()
    (future,) = waiting(conn, 1)
    with pytest.raises(InvalidResponse) as raised:
        conn.data_received(b"?not resp\r\n")
    # asyncio's transports answer an exception from data_received by aborting: connection_lost(exc).
    conn.connection_lost(raised.value)
    error = future.exception()
    assert type(error) is RedisConnectionError
    assert str(raised.value) in str(error)


async def test_connection_lost_fails_every_waiting_caller_with_a_redis_connection_error() -> None:
    conn, _ = open_connection()
    futures = waiting(conn, 3)
    conn.data_received(b"+OK\r\n")
    conn.connection_lost(ConnectionResetError("reset by peer"))
    assert futures[0].result() == b"OK"
    for future in futures[1:]:
        error = future.exception()
        assert type(error) is RedisConnectionError
        assert "reset by peer" in str(error)
    assert conn.lost and conn.outstanding == 0


async def test_a_clean_close_by_the_server_says_so() -> None:
    conn, _ = open_connection()
    (future,) = waiting(conn, 1)
    conn.connection_lost(None)
    assert "closed by server" in str(future.exception())


@pytest.mark.parametrize(
    "reply", ["READONLY You can't write against a read only replica.", "MASTERDOWN Link with MASTER is down"]
)
async def test_a_demoted_master_takes_nothing_new_and_closes_once_in_flight_replies_are_in(
    reply: str,
) -> None:
    conn, transport = open_connection()
    refused, in_flight = waiting(conn, 2)
    conn.data_received(f"-{reply}\r\n".encode())
    assert isinstance(refused.exception(), errors.DemotedReply)
    assert conn.demoted and not conn.usable
    assert transport.close_calls == 0  # a reply is still owed: wait for it
    with pytest.raises(RedisConnectionError):
        waiting(conn, 1)
    conn.data_received(b":1\r\n")
    assert in_flight.result() == 1
    assert transport.close_calls == 1
    assert conn.lost


async def test_a_demoting_reply_counts_even_when_its_caller_gave_up() -> None:
    conn, transport = open_connection()
    (gave_up,) = waiting(conn, 1)
    gave_up.cancel()
    conn.data_received(b"-READONLY You can't write against a read only replica.\r\n")
    assert conn.demoted
    assert transport.close_calls == 1


async def test_retire_closes_at_once_when_nothing_is_in_flight() -> None:
    conn, transport = open_connection()
    conn.retire()
    assert transport.close_calls == 1 and not conn.usable


async def test_send_on_a_closed_connection_raises_connection_error_and_writes_nothing() -> None:
    conn, transport = open_connection()
    conn.close()
    with pytest.raises(RedisConnectionError):
        waiting(conn, 1)
    assert transport.writes == []
    assert transport.close_calls == 1


async def test_send_after_the_connection_was_lost_raises_connection_error() -> None:
    conn, _ = open_connection()
    conn.connection_lost(None)
    with pytest.raises(RedisConnectionError):
        await conn.call("PING")


async def test_a_stalled_server_aborts_the_connection_and_fails_waiters_with_timeout() -> None:
    conn, transport = open_connection(stall_timeout_s=TINY_STALL_S)
    futures = waiting(conn, 2)
    with pytest.raises(RedisTimeoutError, match="redis sent nothing"):
        await asyncio.wait_for(futures[0], SETTLE_S)
    assert type(futures[1].exception()) is RedisTimeoutError
    assert transport.aborted and transport.close_calls == 0
    assert conn.lost and not conn.usable


async def test_the_stall_timer_counts_from_the_last_bytes_received_not_from_the_send() -> None:
    conn, transport = open_connection(stall_timeout_s=PATIENT_STALL_S)
    loop = asyncio.get_running_loop()
    first, second = waiting(conn, 2)
    sent = loop.time()
    # The server answers the first command a while after the send, then goes quiet.
    loop.call_later(SLOW_ANSWER_S, conn.data_received, b"+OK\r\n")
    assert await asyncio.wait_for(first, SETTLE_S) == b"OK"
    answered = loop.time()
    assert answered - sent >= SLOW_ANSWER_S
    with pytest.raises(RedisTimeoutError):
        await asyncio.wait_for(second, SETTLE_S)
    # Measured from the send, the stall would have fired SLOW_ANSWER_S sooner than this.
    assert loop.time() - answered >= PATIENT_STALL_S - SLOW_ANSWER_S / 2
    assert transport.aborted


async def test_call_writes_one_packed_command_and_returns_its_reply() -> None:
    conn, transport = open_connection()
    call = asyncio.ensure_future(conn.call("GET", "k"))
    await transport.wait_for_writes(1)
    assert transport.writes == [b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"]
    conn.data_received(b"$1\r\nv\r\n")
    assert await asyncio.wait_for(call, SETTLE_S) == b"v"


def test_pack_command_writes_resp_bulk_strings_for_text_bytes_and_numbers() -> None:
    packed = pack_command(("EVALSHA", "ab12", 1, b"ds:{u}", 250, b"\x00\xff"))
    assert packed == (
        b"*6\r\n$7\r\nEVALSHA\r\n$4\r\nab12\r\n$1\r\n1\r\n$6\r\nds:{u}\r\n$3\r\n250\r\n$2\r\n\x00\xff\r\n"
    )


def test_pack_command_keeps_crlf_inside_an_argument_as_data() -> None:
    assert pack_command(("SET", "k", b"a\r\nb")) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na\r\nb\r\n"
