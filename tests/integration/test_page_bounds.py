"""Pages of `pending`, `audit` and `outcomes` end before their reply outgrows a frame, filtered scans before
their deadline, each with a cursor to go on from; a malformed cursor is `invalid_request`.

Before, an `audit` page of large events was a frame the client could not read ("bad frame"), an
`audit` filtered by lock key scanned the whole stream in one request, and a cursor the daemon
never gave out could end in `internal`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from drawstate import DrawState, InvalidRequest, new_operation_id
from drawstate.limits import MAX_FRAME_BYTES, Limits
from drawstate.protocol import encode_frame
from drawstated.keys import audit_key, state_key
from tests.support.wire import RawPeer

#: A lock key of 200 four-byte characters: the largest a pending item can carry (800 bytes).
WIDE_LOCK_KEY = "\U0001f3b2" * 200
#: Events planted in the outcome stream for the filtered scan, and the deadline of one page.
SCAN_EVENTS = 60_000
SCAN_DEADLINE_S = 0.3
#: States planted for the filtered `pending` walk.
PENDING_SCAN_STATES = 20_000


def _state(lock_key: str, operation_id: str | None = None, **fields: Any) -> DrawState:
    now = int(time.time())
    return DrawState(
        lock_key=lock_key,
        operation_id=operation_id or new_operation_id(),
        total_count=10,
        start_time=now,
        last_update_time=now,
        **fields,
    )


def _frame_bytes(page: Any) -> int:
    items = [item.to_dict() for item in page.items]
    return len(encode_frame({"id": 1, "ok": True, "items": items, "cursor": page.cursor}))


def test_a_pending_page_of_the_widest_items_ends_before_a_frame_with_a_cursor(
    redis_url, make_config, start_daemon
):
    """The widest items (800-byte lock keys, 64-char ids) are ~950 bytes: a page of 1000 would just
    fit the default 1 MiB frame, so this daemon's frame is 600 KB (its states' cap 500 KB)."""
    frame = 600_000
    config = make_config(redis_url=redis_url, max_frame_bytes=frame, limits=Limits(max_state_bytes=500_000))
    daemon = start_daemon(config)
    saved = set()
    with daemon.client(timeout=10.0) as client:
        for n in range(1200):
            state = _state(WIDE_LOCK_KEY[:-4] + f"{n:04d}", operation_id="o" * 60 + f"{n:04d}")
            client.save(state)
            saved.add(state.lock_key)
    seen: list[str] = []
    sizes: list[int] = []
    cursor = None
    peer = RawPeer(config.socket_path, timeout=10.0)
    while True:
        reply = peer.request(
            {"id": 1, "op": "pending", "limit": 1000, "cursor": cursor, "deadline_ms": 10_000}
        )
        sizes.append(len(encode_frame(reply)))
        seen += [item["lock_key"] for item in reply["items"]]
        if reply["cursor"] is None:
            break
        cursor = reply["cursor"]
    peer.close()
    assert max(sizes) <= frame
    assert len(sizes) >= 2  # 1200 items of ~950 bytes (1.1 MB): not one 600 KB page
    assert sorted(seen) == sorted(saved)


def _sixty_large_endings(client) -> list[str]:
    """60 completed operations, each event carrying ~33 KiB of metadata (two frames' worth); their ids."""
    metadata = {f"key{n}": "v" * 1024 for n in range(32)}
    ended = []
    for n in range(60):
        state = _state(f"player:{n}", metadata=metadata)
        client.save(state)
        client.complete(state.lock_key, state.operation_id)
        ended.append(state.operation_id)
    return ended


def test_an_audit_page_of_large_events_ends_before_a_frame_and_the_client_reads_every_page(client, new_state):
    ended = _sixty_large_endings(client)
    page = client.audit(limit=1000)  # 60 events x 33 KiB: two frames' worth
    assert page.cursor is not None and 0 < len(page.items) < 60
    assert _frame_bytes(page) <= MAX_FRAME_BYTES
    found = [item.operation_id for item in page.items]
    while page.cursor is not None:
        page = client.audit(limit=1000, cursor=page.cursor)
        found += [item.operation_id for item in page.items]
    assert found == ended


def test_an_audit_filtered_by_lock_key_stops_within_its_deadline_and_resumes_from_its_cursor(
    client, rdb, new_state
):
    first = _state("player:needle")
    client.save(first)
    client.complete(first.lock_key, first.operation_id)
    [(_, fields)] = rdb.xrange(audit_key("lottery"))
    other = {**fields, b"lock_key": b"player:hay"}
    pipe = rdb.pipeline(transaction=False)
    for _ in range(SCAN_EVENTS):
        pipe.xadd(audit_key("lottery"), other, maxlen=None)
    pipe.execute()
    last = _state("player:needle")
    client.save(last)
    client.complete(last.lock_key, last.operation_id)

    found, pages, cursor = [], 0, None
    while True:
        started = time.monotonic()
        page = client.audit("player:needle", cursor=cursor, timeout=SCAN_DEADLINE_S)
        assert time.monotonic() - started < SCAN_DEADLINE_S
        pages += 1
        found += [item.operation_id for item in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    print(f"filtered audit over {SCAN_EVENTS} events: {pages} pages of at most {SCAN_DEADLINE_S} s")
    assert found == [first.operation_id, last.operation_id]
    assert pages > 1  # the scan did not fit one deadline: it went on from its cursor


def test_an_outcomes_page_of_large_events_ends_before_a_frame_and_the_rest_comes_next_time(client, daemon):
    """`outcomes` has no cursor: what was read past the end of a page is pending for the consumer
    and comes first on its next read, once the page before is acknowledged."""
    ended = _sixty_large_endings(client)
    peer = RawPeer(daemon.config.socket_path, timeout=10.0)
    request = {"id": 1, "op": "outcomes", "group": "refunds", "consumer": "w", "limit": 1000}
    found: list[str] = []
    sizes: list[int] = []
    while True:
        reply = peer.request(request)
        assert reply["ok"] is True, reply
        if not reply["items"]:
            break
        sizes.append(len(encode_frame(reply)))
        found += [item["operation_id"] for item in reply["items"]]
        assert client.ack("refunds", [item["id"] for item in reply["items"]]) == len(reply["items"])
    peer.close()
    assert max(sizes) <= MAX_FRAME_BYTES
    assert len(sizes) >= 2  # 60 events x 33 KiB: two frames' worth, not one page
    assert found == ended  # every event once, in stream order


def test_pending_older_than_over_many_operations_stops_within_its_deadline_and_resumes_from_its_cursor(
    client, rdb, new_state
):
    """Every lock key walked with `older_than_s`: few states match, so a page reads many before it
    has anything; past its share of the deadline it returns what it has, with a cursor."""
    hay = _state("player:hay")
    client.save(hay)
    key = state_key("lottery", hay.lock_key, hay.operation_id)
    raw = rdb.get(key)
    assert raw is not None
    pipe = rdb.pipeline(transaction=False)
    for n in range(PENDING_SCAN_STATES):  # recent states: not older than the filter
        pipe.set(state_key("lottery", f"player:hay{n}", hay.operation_id), raw)
    pipe.execute()
    long_ago = int(time.time()) - 600
    needles = [
        new_state(f"player:needle{n}", start_time=long_ago, last_update_time=long_ago) for n in range(2)
    ]
    for needle in needles:
        client.save(needle)

    found, pages, cursor = set(), 0, None
    while True:
        started = time.monotonic()
        page = client.pending(older_than_s=300, cursor=cursor, limit=1000, timeout=SCAN_DEADLINE_S)
        assert time.monotonic() - started < SCAN_DEADLINE_S
        pages += 1
        found |= {(item.lock_key, item.operation_id) for item in page.items}
        if page.cursor is None:
            break
        cursor = page.cursor
    print(f"filtered pending over {PENDING_SCAN_STATES} states: {pages} pages of at most {SCAN_DEADLINE_S} s")
    assert found == {(needle.lock_key, needle.operation_id) for needle in needles}
    assert pages > 1  # the walk did not fit one deadline: it went on from its cursor


PENDING_CURSORS = [
    "",  # empty: no cursor, the walk starts over (answered ok below)
    "x",
    "0",
    "0.0",
    "0.0:",
    ".0:0",
    "0.:0",
    "-1.0:0",
    "0.-1:0",
    "0.0:-1",
    "0.18446744073709551616:0",  # one past the largest SCAN cursor
    "99999.0:0",
    "0.0:9999999999",
    "0.0:0 ",
    " 0.0:0",
    "0.0:0\n",
    "٣.٣:٣",  # Arabic-Indic digits: \d in Python, not in Redis
    "0x1.0:0",
    "1e3.0:0",
    "0.0:0:0",
    "a" * 64,
    "a" * 65,
]
LOCK_CURSORS = ["", "not an id!", "x" * 65, "\x00", "op id"]
AUDIT_CURSORS = [
    "x",
    "0",
    "-",
    "+",
    "0-",
    "-0",
    "0-0-0",
    "18446744073709551616-0",
    "0-18446744073709551616",
    "18446744073709551615-18446744073709551615",
    "٣-٣",
    "1-1 ",
    "1.5-0",
    "a" * 65,
]
WRONG_TYPES: list[Any] = [0, 1.5, True, b"0.0:0", ["0.0:0"], {"a": 1}]


@pytest.fixture
def raw_peer(daemon: Any) -> Iterator[RawPeer]:
    peer = RawPeer(daemon.config.socket_path)
    yield peer
    peer.close()


def _code(peer: Any, request: dict[str, Any]) -> str:
    reply = peer.request({"id": 7, **request})
    return "ok" if reply["ok"] else str(reply["error"]["code"])


@pytest.mark.parametrize("cursor", PENDING_CURSORS + WRONG_TYPES, ids=repr)
def test_a_pending_cursor_this_daemon_never_gave_out_is_invalid_request(raw_peer, cursor):
    code = _code(raw_peer, {"op": "pending", "cursor": cursor})
    assert code == ("ok" if cursor == "" else "invalid_request")


@pytest.mark.parametrize("cursor", LOCK_CURSORS + WRONG_TYPES, ids=repr)
def test_a_pending_cursor_of_one_lock_key_that_is_no_operation_id_is_invalid_request(raw_peer, cursor):
    code = _code(raw_peer, {"op": "pending", "lock_key": "player:1", "cursor": cursor})
    assert code == ("ok" if cursor == "" else "invalid_request")


@pytest.mark.parametrize("cursor", AUDIT_CURSORS + WRONG_TYPES, ids=repr)
def test_an_audit_cursor_that_is_no_stream_id_is_invalid_request(raw_peer, cursor):
    for request in ({"op": "audit"}, {"op": "audit", "lock_key": "player:1"}):
        assert _code(raw_peer, {**request, "cursor": cursor}) == "invalid_request"


@pytest.mark.parametrize(
    "extra", [{"since": 0}, {"cursor": "1-0"}, {"newest": 1}, {"newest": "yes"}], ids=repr
)
def test_audit_newest_takes_neither_since_nor_cursor_and_is_a_boolean(raw_peer, extra):
    assert _code(raw_peer, {"op": "audit", "newest": True, **extra}) == "invalid_request"


def test_the_largest_stream_id_as_a_cursor_is_the_end_of_the_stream(raw_peer):
    reply = raw_peer.request({"id": 1, "op": "audit", "cursor": "18446744073709551615-18446744073709551614"})
    assert reply["ok"] is True and reply["items"] == [] and reply["cursor"] is None


def test_malformed_cursors_never_raise_invalid_request_through_the_client(client):
    with pytest.raises(InvalidRequest):
        client.pending(cursor="0.18446744073709551616:0")
    with pytest.raises(InvalidRequest):
        client.audit(cursor="18446744073709551615-18446744073709551615")
