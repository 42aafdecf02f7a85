"""Provocations of the memory limits of docs/limits.md: decoding limits and the in-flight byte budget.

Each returns the outcomes it observed, as test_limits.py's PROVOKE table expects, after checking
that a request at the limit is still served.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack

from drawstate.protocol import HEADER, encode_frame
from drawstated.server.decoding import MAX_REQUEST_DEPTH, MAX_REQUEST_ITEMS
from tests.chaos.limits_harness import Harness, _state
from tests.chaos.probes import reply_code
from tests.support.daemon import DaemonThread
from tests.support.waiting import wait_until

#: The budgets of the daemons these provocations start, and the metadata that fills them.
SMALL_BUDGET = 64 * 1024
PADDED_METADATA = {f"k{n}": "v" * 1000 for n in range(8)}


def _raw_code(h: Harness, body: bytes) -> tuple[Any, str]:
    peer = h.peer()
    peer.send_raw(HEADER.pack(len(body)) + body)
    reply = peer.read()
    return reply["id"], reply_code(reply)


def _ping_padded(pad: Any) -> bytes:
    return msgpack.packb({"id": 1, "op": "ping", "pad": pad})


def request_items(h: Harness) -> set[str]:
    lists = (MAX_REQUEST_ITEMS - 3) // 10_001  # the map's 3 entries, then lists of 10 000 zeros
    assert _raw_code(h, _ping_padded([[0] * 10_000] * lists)) == (1, "ok")
    request_id, code = _raw_code(h, _ping_padded([[{}] * 10_000] * (lists + 1)))
    assert request_id == 1  # found without decoding the rest: a pipelining client can match it
    return {code}


def request_nesting(h: Harness) -> set[str]:
    def nested(depth: int) -> Any:
        value: Any = 0
        for _ in range(depth - 1):  # the request map is the first level
            value = [value]
        return value

    assert _raw_code(h, _ping_padded(nested(MAX_REQUEST_DEPTH)))[1] == "ok"
    request_id, code = _raw_code(h, _ping_padded(nested(MAX_REQUEST_DEPTH + 1)))
    assert request_id == 1
    return {code}


def _saves(count: int) -> bytes:
    return b"".join(
        encode_frame(
            {"id": i, "op": "save", "deadline_ms": 10_000, "state": _state(metadata=PADDED_METADATA)}
        )
        for i in range(count)
    )


def _connections(daemon: DaemonThread) -> list[Any]:
    assert daemon.server.state is not None
    return list(daemon.server.state.connections)


def inflight_bytes_per_connection(h: Harness) -> set[str]:
    redis = h.stoppable_redis
    daemon = h.start(redis.url, max_inflight_bytes_per_connection=SMALL_BUDGET)
    peer = h.peer(daemon, timeout=15)
    redis.pause()
    try:
        peer.send_raw(_saves(20))

        def paused_at_budget() -> bool:
            return bool(
                daemon.call(
                    lambda: any(
                        c.read_paused and 0 < c.in_flight < 20 and c.requests_held >= SMALL_BUDGET
                        for c in _connections(daemon)
                    )
                )
            )

        wait_until(paused_at_budget, timeout=5)
    finally:
        redis.resume()
    assert sorted(peer.read()["id"] for _ in range(20)) == list(range(20))  # all served, in turn
    return {"paused"}


def inflight_bytes_in_total(h: Harness) -> set[str]:
    redis = h.stoppable_redis
    daemon = h.start(
        redis.url, max_inflight_bytes=SMALL_BUDGET, max_inflight_bytes_per_connection=SMALL_BUDGET
    )
    peers = [h.peer(daemon, timeout=15) for _ in range(3)]
    redis.pause()
    try:
        for peer in peers:
            with contextlib.suppress(BlockingIOError):
                peer.send_raw(_saves(10))

        def held_back() -> bool:
            assert daemon.server.state is not None
            budget = daemon.server.state.budget
            return bool(
                daemon.call(
                    lambda: (
                        budget.held >= SMALL_BUDGET
                        and sum(c.budget_paused for c in _connections(daemon)) >= 2
                        and sum(c.in_flight for c in _connections(daemon)) < 30
                    )
                )
            )

        wait_until(held_back, timeout=5)
    finally:
        redis.resume()
    for peer in peers:
        assert sorted(peer.read()["id"] for _ in range(10)) == list(range(10))
    assert daemon.call(lambda: daemon.server.state.budget.held) == 0  # all given back
    return {"paused"}
