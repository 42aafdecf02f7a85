"""docs/limits.md is the one table of limits; this module holds it to the code and to the wire.

For every row: the named constant exists with the documented default, the
Config field and the serve option set it, and a client that goes past it gets
the documented outcome — a wire error code, a paused connection or a closed
one. Each provocation also checks the value at the limit is still accepted.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from drawstate import limits
from drawstate.protocol import HEADER, encode_frame
from drawstated import config as config_module
from drawstated.config import Config
from testbed.redis_proc import RedisProcess
from tests.chaos import limits_memory
from tests.chaos.limits_harness import Harness, _state
from tests.chaos.limits_table import ROWS, ROWS_BY_NAME
from tests.chaos.probes import reply_code
from tests.support.daemon import DaemonThread
from tests.support.waiting import wait_until

# --- provoking each limit ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def limits_daemon(chaos_redis: RedisProcess) -> Iterator[DaemonThread]:
    directory = Path(tempfile.mkdtemp(prefix="dsl-", dir="/tmp"))
    daemon = DaemonThread(
        Config(socket_path=directory / "d.sock", data_dir=directory / "data", redis_url=chaos_redis.url)
    ).start()
    yield daemon
    daemon.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def harness(request: pytest.FixtureRequest, limits_daemon: DaemonThread) -> Iterator[Harness]:
    h = Harness(request, limits_daemon)
    yield h
    h.close()


def _frame_size(h: Harness) -> set[str]:
    peer = h.peer()
    overhead = len(msgpack.packb({"id": 1, "op": "ping", "pad": "x" * 70_000})) - 70_000
    body = msgpack.packb({"id": 1, "op": "ping", "pad": "x" * (limits.MAX_FRAME_BYTES - overhead)})
    assert len(body) == limits.MAX_FRAME_BYTES
    peer.send_raw(HEADER.pack(len(body)) + body)
    assert peer.read()["ok"] is True  # at the limit: served
    peer.send_raw(HEADER.pack(limits.MAX_FRAME_BYTES + 1))  # the header alone is refused
    reply = peer.read()
    assert reply["id"] is None
    return {reply_code(reply)} | ({"closed"} if peer.closed_by_peer() else set())


def _connections(h: Harness) -> set[str]:
    daemon = h.start(max_connections=2)
    held = [h.peer(daemon), h.peer(daemon)]
    assert all(p.request({"id": 1, "op": "ping"})["ok"] for p in held)
    extra = h.peer(daemon)
    reply = extra.read()
    assert reply["id"] is None and reply["error"]["retryable"] is True
    return {reply_code(reply)} | ({"closed"} if extra.closed_by_peer() else set())


def _connection_of(daemon: DaemonThread, condition: Callable[[Any], bool]) -> bool:
    assert daemon.server.state is not None
    connections = daemon.server.state.connections
    return bool(daemon.call(lambda: any(condition(c) for c in connections)))


def _in_flight(h: Harness) -> set[str]:
    redis = h.stoppable_redis
    daemon = h.start(redis.url, max_inflight_per_connection=4)
    peer = h.peer(daemon)
    redis.pause()
    try:
        peer.send_raw(b"".join(encode_frame({"id": i, "op": "save", "state": _state()}) for i in range(10)))
        wait_until(lambda: _connection_of(daemon, lambda c: c.in_flight == 4 and c.read_paused), timeout=5)
        assert not _connection_of(daemon, lambda c: c.in_flight > 4)
    finally:
        redis.resume()
    assert sorted(peer.read()["id"] for _ in range(10)) == list(range(10))  # all served, in turn
    return {"paused"}


def _unread_replies(h: Harness) -> set[str]:
    prize = {"id": "p" * 100, "name": "n" * 150, "probability": 0.5, "value": 1}
    state = _state(total_count=10_000, completed_count=1000, results=[], prize_results=[prize] * 1000)
    assert h.save(state) == "ok"
    load = {"op": "load", "lock_key": state["lock_key"], "operation_id": state["operation_id"]}
    greedy = h.peer()
    greedy.sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):  # the daemon stopped reading: that is the point
        greedy.send_raw(b"".join(encode_frame({"id": i, **load}) for i in range(100)))
    wait_until(lambda: _connection_of(h.daemon, lambda c: c.write_paused and c.read_paused), timeout=5)
    return {"paused"}


def _partial_frame(h: Harness) -> set[str]:
    daemon = h.start(partial_frame_timeout_s=0.3)
    peer = h.peer(daemon)
    started = time.monotonic()
    peer.send_raw(encode_frame({"id": 1, "op": "ping"})[:6])
    closed = peer.closed_by_peer()
    assert time.monotonic() - started >= 0.25
    return {"closed"} if closed else set()


def _request_id(h: Harness) -> set[str]:
    peer = h.peer()
    assert peer.request({"id": limits.INT64_MAX, "op": "ping"})["id"] == limits.INT64_MAX
    reply = peer.request({"id": limits.INT64_MAX + 1, "op": "ping"})
    assert reply["id"] is None
    assert peer.request({"id": 1, "op": "ping"})["ok"]  # still open
    return {reply_code(reply)}


def _longest_deadline(h: Harness) -> set[str]:
    ok, too_short = h.codes({"op": "ping", "deadline_ms": 2**62}, {"op": "ping", "deadline_ms": 0})
    assert ok == "ok"  # clipped, not refused
    return {too_short}


def _default_deadline(h: Harness) -> set[str]:
    redis = h.stoppable_redis
    daemon = h.start(redis.url, default_deadline_ms=300)
    peer = h.peer(daemon)
    redis.pause()
    try:
        started = time.monotonic()
        reply = peer.request({"id": 1, "op": "save", "state": _state()})  # names no deadline
        assert time.monotonic() - started < 0.3
    finally:
        redis.resume()
    return {reply_code(reply)}


def _state_size(h: Harness) -> set[str]:
    from drawstated.codec import StateTooLarge, encode_head

    prize = {"id": "p" * 100, "name": "n" * 150, "probability": 0.5, "value": 1}

    def sized(count: int) -> dict[str, Any]:
        return _state(total_count=10_000, completed_count=count, results=[], prize_results=[prize] * count)

    each = len(encode_head(sized(2))) - len(encode_head(sized(1)))
    under = (limits.MAX_STATE_BYTES - len(encode_head(sized(0)))) // each
    encode_head(sized(under))  # fits
    with pytest.raises(StateTooLarge):
        encode_head(sized(under + 1))
    assert h.save(sized(under)) == "ok"
    return {h.save(sized(under + 1))}


def _total_count(h: Harness) -> set[str]:
    assert h.save(_state(total_count=limits.MAX_TOTAL)) == "ok"
    return {h.save(_state(total_count=limits.MAX_TOTAL + 1))}


def _list_lengths(h: Harness) -> set[str]:
    error = {"draw_index": 2, "error_message": "x", "timestamp": 1}
    assert h.save(_state(total_count=2, completed_count=1, results=[1], errors=[error])) == "ok"
    return {
        h.save(_state(completed_count=1, results=[1, 2])),
        h.save(
            _state(
                completed_count=1,
                results=[],
                prize_results=[{"id": "a", "name": "", "probability": 0, "value": 1}] * 2,
            )
        ),
        h.save(_state(total_count=2, completed_count=2, results=[1, 2], errors=[error])),
    }


def _text_limit(field: str, cap: int) -> Callable[[Harness], set[str]]:
    def provoke(h: Harness) -> set[str]:
        fill = "k" if field == "lock_key" else "a"
        assert h.save(_state(**{field: fill * cap})) == "ok"
        in_state = h.save(_state(**{field: fill * (cap + 1)}))
        as_field = {"lock_key": "limits:1", "operation_id": "op-1", field: fill * (cap + 1)}
        [in_request] = h.codes({"op": "complete", **as_field})
        return {in_state, in_request}

    return provoke


def _metadata(entries: int, key_chars: int, value_chars: int) -> dict[str, str]:
    return {f"{i:0{key_chars}d}": "v" * value_chars for i in range(entries)}


def _metadata_entries(h: Harness) -> set[str]:
    assert h.save(_state(metadata=_metadata(limits.MAX_METADATA_ENTRIES, 4, 1))) == "ok"
    return {h.save(_state(metadata=_metadata(limits.MAX_METADATA_ENTRIES + 1, 4, 1)))}


def _metadata_key(h: Harness) -> set[str]:
    assert h.save(_state(metadata=_metadata(1, limits.MAX_METADATA_KEY_CHARS, 1))) == "ok"
    return {h.save(_state(metadata=_metadata(1, limits.MAX_METADATA_KEY_CHARS + 1, 1)))}


def _metadata_value(h: Harness) -> set[str]:
    assert h.save(_state(metadata=_metadata(1, 4, limits.MAX_METADATA_VALUE_CHARS))) == "ok"
    return {h.save(_state(metadata=_metadata(1, 4, limits.MAX_METADATA_VALUE_CHARS + 1)))}


def _prize_text(h: Harness) -> set[str]:
    def prize(chars: int) -> dict[str, Any]:
        return {"id": "i" * chars, "name": "n" * chars, "probability": 0.5, "value": 1}

    assert h.save(_state(results=[], prize_results=[prize(limits.MAX_PRIZE_TEXT_CHARS)])) == "ok"
    return {h.save(_state(results=[], prize_results=[prize(limits.MAX_PRIZE_TEXT_CHARS + 1)]))}


def _error_message(h: Harness) -> set[str]:
    def error(chars: int) -> dict[str, Any]:
        return {"draw_index": 2, "error_message": "e" * chars, "timestamp": 1}

    assert h.save(_state(errors=[error(limits.MAX_ERROR_MESSAGE_CHARS)])) == "ok"
    return {h.save(_state(errors=[error(limits.MAX_ERROR_MESSAGE_CHARS + 1)]))}


def _draw_ints(h: Harness) -> set[str]:
    assert h.save(_state(results=[-limits.DRAW_INT_MAX])) == "ok"
    prize = {"id": "a", "name": "", "probability": 1, "value": limits.DRAW_INT_MAX + 1}
    return {
        h.save(_state(results=[limits.DRAW_INT_MAX + 1])),
        h.save(_state(results=[], prize_results=[prize])),
    }


def _token(h: Harness) -> set[str]:
    assert h.save(_state(), token="t" * limits.MAX_TOKEN_CHARS) == "ok"
    return {h.save(_state(), token="t" * (limits.MAX_TOKEN_CHARS + 1))}


def _reason(h: Harness) -> set[str]:
    def rollback(chars: int) -> dict[str, Any]:
        return {"op": "rollback", "lock_key": "limits:1", "operation_id": f"r{chars}", "reason": "r" * chars}

    ok, too_long = h.codes(rollback(limits.MAX_REASON_CHARS), rollback(limits.MAX_REASON_CHARS + 1))
    assert ok == "ok"
    return {too_long}


def _ttl(h: Harness) -> set[str]:
    assert h.save(_state(), ttl_s=config_module.MAX_TTL_S) == "ok"
    return {h.save(_state(), ttl_s=config_module.MAX_TTL_S + 1)}


def _page_size(h: Harness) -> set[str]:
    from drawstated.ops.fields import MAX_PENDING_LIMIT

    ok_pending, ok_audit, pending, audit = h.codes(
        {"op": "pending", "limit": MAX_PENDING_LIMIT},
        {"op": "audit", "limit": MAX_PENDING_LIMIT},
        {"op": "pending", "limit": MAX_PENDING_LIMIT + 1},
        {"op": "audit", "limit": MAX_PENDING_LIMIT + 1},
    )
    assert (ok_pending, ok_audit) == ("ok", "ok")
    return {pending, audit}


def _cursor(h: Harness) -> set[str]:
    ok, pending, audit = h.codes(
        {"op": "pending", "lock_key": "limits:1", "cursor": "c" * 64},
        {"op": "pending", "lock_key": "limits:1", "cursor": "c" * 65},
        {"op": "audit", "cursor": "1" * 65},
    )
    assert ok == "ok"
    return {pending, audit}


def _redis_stall_detector(h: Harness) -> set[str]:
    redis = h.stoppable_redis
    daemon = h.start(redis.url, redis_socket_timeout_s=0.2)
    peer = h.peer(daemon)
    assert peer.request({"id": 0, "op": "save", "state": _state()})["ok"]
    connects = daemon.call(lambda: daemon.server.stats.redis_connects)
    redis.pause()
    try:
        started = time.monotonic()
        reply = peer.request({"id": 1, "op": "save", "state": _state(), "deadline_ms": 1000})
        assert time.monotonic() - started < 1.0
        assert daemon.call(lambda: daemon.server.stats.redis_connects) > connects  # dropped, reopened
    finally:
        redis.resume()
    assert peer.request({"id": 2, "op": "save", "state": _state()})["ok"]
    return {reply_code(reply)}


PROVOKE: dict[str, Callable[[Harness], set[str]]] = {
    "frame size": _frame_size,
    "connections": _connections,
    "in flight per connection": _in_flight,
    "unread replies per connection": _unread_replies,
    "partial-frame timeout": _partial_frame,
    "request id": _request_id,
    "longest deadline": _longest_deadline,
    "default deadline": _default_deadline,
    "state size": _state_size,
    "total_count": _total_count,
    "list lengths": _list_lengths,
    "lock key length": _text_limit("lock_key", limits.MAX_LOCK_KEY_CHARS),
    "operation id length": _text_limit("operation_id", limits.MAX_OPERATION_ID_CHARS),
    "metadata entries": _metadata_entries,
    "metadata key length": _metadata_key,
    "metadata value length": _metadata_value,
    "prize id and name length": _prize_text,
    "error message length": _error_message,
    "draw results and prize values": _draw_ints,
    "save token length": _token,
    "rollback reason length": _reason,
    "ttl_s": _ttl,
    "page size of pending and audit": _page_size,
    "cursor length of pending and audit": _cursor,
    "Redis stall detector": _redis_stall_detector,
    "request items": limits_memory.request_items,
    "request nesting": limits_memory.request_nesting,
    "in-flight bytes per connection": limits_memory.inflight_bytes_per_connection,
    "in-flight bytes in total": limits_memory.inflight_bytes_in_total,
}
#: Rows whose outcome is provoked by other tests, and where.
COVERED_ELSEWHERE = {
    "shutdown grace": "tests/integration/test_process.py (SIGTERM answers requests in flight)",
}
#: Rows that document alternatives ("X or Y"): provoking one of them is enough.
EITHER = {"default deadline", "Redis stall detector"}


def test_every_limit_with_an_outcome_is_provoked_here_or_elsewhere():
    with_outcome = {row.name for row in ROWS if row.outcome}
    assert with_outcome - PROVOKE.keys() - COVERED_ELSEWHERE.keys() == set()
    assert PROVOKE.keys() <= ROWS_BY_NAME.keys()


@pytest.mark.parametrize("name", sorted(PROVOKE))
def test_limit_is_enforced_with_the_documented_outcome(harness, name):
    documented = ROWS_BY_NAME[name].outcome
    observed = PROVOKE[name](harness)
    if name in EITHER:
        assert observed and observed <= documented, (observed, documented)
    else:
        assert observed == documented


def test_audit_cursor_past_the_stream_id_range_is_invalid_request(harness):
    assert harness.codes({"op": "audit", "cursor": "99999999999999999999-0"}) == ["invalid_request"]
