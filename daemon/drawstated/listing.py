"""The `pending` op: live operations of one lock key, or of every lock key, a page at a time.

One lock key walks its index (ordered by operation id; the cursor is the last
id looked at). Every lock key walks SCAN with a match pattern, never
KEYS, on every master of a Cluster in turn; its opaque cursor is
"<node>.<scan cursor>:<keys of that step already returned>", so a page can end
in the middle of a SCAN step without losing the rest.

A page holds at most READ_CHUNK raw states at once, ends before its reply would
outgrow a frame, and returns what it has (with a cursor) past PAGE_TIME_SHARE of
its deadline, so a lock key with many operations, or a large keyspace, never
costs more than a chunk of memory or a deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Container, Mapping
from typing import Any

import msgpack

from drawstate.limits import INT64_MAX, Limits
from drawstated import errors, keys, requests
from drawstated.store import READ_CHUNK, Store

ItemFn = Callable[[tuple[str, str], bytes], "dict[str, Any] | None"]
_SCAN_CURSOR_RE = re.compile(r"([0-9]{1,4})\.([0-9]{1,20}):([0-9]{1,9})")  # ASCII digits only
#: SCAN cursors are unsigned 64-bit; Redis refuses a larger one.
SCAN_CURSOR_MAX = 2**64 - 1
#: A page returns early (with a cursor) past this share of its deadline.
PAGE_TIME_SHARE = 0.5
#: Room kept in a reply frame for its envelope.
FRAME_HEADROOM_BYTES = 4096


async def list_pending(
    store: Store,
    limits: Limits,
    max_frame_bytes: int,
    item: ItemFn,
    deferred: Container[tuple[str, str]],
    request: Mapping[str, Any],
    deadline: float,
) -> dict[str, Any]:
    limit = requests.pending_limit(request)
    older_than = requests.optional_int(request, "older_than_s", 0, INT64_MAX)
    cursor = requests.optional_str(request, "cursor", requests.MAX_CURSOR_CHARS)
    now = int(time.time())

    def keep(found: dict[str, Any] | None) -> bool:
        if found is None or (found["lock_key"], found["operation_id"]) in deferred:
            return False
        return older_than is None or now - found["last_update_time"] >= older_than

    page = _Page(limit, max_frame_bytes - FRAME_HEADROOM_BYTES)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + (deadline - loop.time()) * PAGE_TIME_SHARE
    if request.get("lock_key") is not None:
        lock_key = requests.lock_key(request, limits)
        after = cursor or ""
        if after:
            requests.operation_id({"operation_id": after}, limits, required=True)
        return await _one_lock(store, item, keep, page, lock_key, after, give_up, deadline)
    position = _scan_position(cursor)
    return await _all_locks(store, item, keep, page, store.prefix, position, give_up, deadline)


class _Page:
    """Items of one `pending` reply: at most `limit`, and never more than a frame holds."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.items: list[dict[str, Any]] = []
        self.size = 0

    @property
    def full(self) -> bool:
        return len(self.items) >= self.limit

    def take(self, found: dict[str, Any]) -> bool:
        """Add one item; False when it would outgrow the frame (it goes on the next page)."""
        size = len(msgpack.packb(found))
        if self.items and self.size + size > self.max_bytes:
            return False
        self.items.append(found)
        self.size += size
        return True

    def reply(self, cursor: str | None) -> dict[str, Any]:
        return {"items": self.items, "cursor": cursor}


async def _one_lock(
    store: Store,
    item: ItemFn,
    keep: Callable[[dict[str, Any] | None], bool],
    page: _Page,
    lock_key: str,
    after: str,
    give_up: float,
    deadline: float,
) -> dict[str, Any]:
    """Operations of one lock key after `after`, READ_CHUNK states per round trip."""
    loop = asyncio.get_running_loop()
    while True:
        chunk = min(READ_CHUNK, page.limit - len(page.items))
        states, following = await store.pending_for_lock(lock_key, after, chunk, deadline)
        for operation_id, raw in states:
            found = item((lock_key, operation_id), raw)
            if keep(found):
                assert found is not None
                if not page.take(found):
                    return page.reply(after)  # the frame is full: this one comes first next time
            after = operation_id
        if following is None or page.full:
            return page.reply(following)
        after = following
        if loop.time() >= give_up:
            return page.reply(after)


def _scan_position(cursor: str | None) -> tuple[int, int, int]:
    """(node, SCAN cursor, keys of that step already returned) from a cursor this daemon gave out."""
    if not cursor:
        return 0, 0, 0
    match = _SCAN_CURSOR_RE.fullmatch(cursor)
    if match is None or int(match[2]) > SCAN_CURSOR_MAX:
        raise errors.invalid("cursor is not one this daemon returned")
    return int(match[1]), int(match[2]), int(match[3])


async def _all_locks(
    store: Store,
    item: ItemFn,
    keep: Callable[[dict[str, Any] | None], bool],
    page: _Page,
    prefix: str,
    position: tuple[int, int, int],
    give_up: float,
    deadline: float,
) -> dict[str, Any]:
    node, scan_cursor, skip = position
    nodes = await store.scan_node_count()
    loop = asyncio.get_running_loop()
    while node < nodes:
        next_cursor, names = await store.scan_states(node, scan_cursor, deadline)
        names = sorted(names)[skip:]  # sorted, so a repeated step skips the same keys
        following = (node, next_cursor) if next_cursor else (node + 1, 0)
        for start in range(0, len(names), READ_CHUNK):  # a chunk of raw states at a time
            chunk = names[start : start + READ_CHUNK]
            raws = await store.get_many(chunk, deadline)
            for taken, (name, raw) in enumerate(zip(chunk, raws, strict=True), start=start + 1):
                if raw is None:
                    continue  # expired between SCAN and GET
                found = item(keys.parse_state_key(prefix, name.decode()), raw)
                if keep(found):
                    assert found is not None
                    if not page.take(found):  # the frame is full: this key comes first next time
                        return page.reply(f"{node}.{scan_cursor}:{skip + taken - 1}")
                if page.full:
                    if taken < len(names):
                        return page.reply(f"{node}.{scan_cursor}:{skip + taken}")
                    return page.reply(_cursor(following, nodes))
            done = start + len(chunk)
            if loop.time() >= give_up and done < len(names):
                return page.reply(f"{node}.{scan_cursor}:{skip + done}")
        (node, scan_cursor), skip = following, 0
        if loop.time() >= give_up:
            return page.reply(_cursor(following, nodes))
    return page.reply(None)


def _cursor(position: tuple[int, int], nodes: int) -> str | None:
    node, scan_cursor = position
    return None if node >= nodes else f"{node}.{scan_cursor}:0"
