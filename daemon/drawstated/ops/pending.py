"""The `pending` op: live operations of one lock key, or of every lock key, a page at a time.

One lock key walks its index (ordered by operation id; the cursor is the last
id looked at): on one server a page of up to READ_CHUNK items is one Redis
round trip (page.lua), on Cluster two or more (Store.pending_for_lock). Every
lock key walks SCAN with a match pattern, never
KEYS, on every master of a Cluster in turn; its opaque cursor is
"<node>.<scan cursor>:<keys of that step already returned>", so a page can end
in the middle of a SCAN step without losing the rest.

A page holds at most READ_CHUNK raw states at once, ends before its reply would
outgrow a frame, and returns what it has (with a cursor) past PAGE_TIME_SHARE of
its deadline, so a lock key with many operations, or a large keyspace, never
costs more than a chunk of memory or a deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import msgpack

from drawstate.limits import INT64_MAX
from drawstated import errors, keys
from drawstated.ops import fields
from drawstated.ops.context import FRAME_HEADROOM_BYTES, OpContext, Reply, Request, loop_time
from drawstated.ops.states import pending_item
from drawstated.storage.store import READ_CHUNK, Store

#: A listed item for (lock key, operation id, stored state), or None when it is not listed.
ItemFn = Callable[[str, str, bytes], "dict[str, Any] | None"]
_SCAN_CURSOR_RE = re.compile(r"([0-9]{1,4})\.([0-9]{1,20}):([0-9]{1,9})")  # ASCII digits only
#: SCAN cursors are unsigned 64-bit; Redis refuses a larger one.
SCAN_CURSOR_MAX = 2**64 - 1
#: A page returns early (with a cursor) past this share of its deadline.
PAGE_TIME_SHARE = 0.5


class Pending:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        ctx = self.ctx
        limit = fields.pending_limit(request)
        older_than = fields.optional_int(request, "older_than_s", 0, INT64_MAX)
        cursor = fields.optional_str(request, "cursor", fields.MAX_CURSOR_CHARS)
        now = int(time.time())
        hidden = ctx.cleanup.hidden_from_read()

        def item(lock_key: str, operation_id: str, raw: bytes) -> dict[str, Any] | None:
            """The item for a stored state, or None when it is not listed."""
            if (lock_key, operation_id) in hidden:
                return None
            found = pending_item(lock_key, operation_id, raw, ctx.limits)
            if found is None or (older_than is not None and now - found["last_update_time"] < older_than):
                return None
            return found

        page = _Page(limit, ctx.config.max_frame_bytes - FRAME_HEADROOM_BYTES)
        started = loop_time()
        give_up = started + (deadline - started) * PAGE_TIME_SHARE
        if request.get("lock_key") is not None:
            lock_key = fields.lock_key(request, ctx.limits)
            after = cursor or ""
            if after:
                fields.operation_id({"operation_id": after}, ctx.limits, required=True)
            return await _one_lock(ctx.store, item, page, lock_key, after, give_up, deadline)
        position = _scan_position(cursor)
        return await _all_locks(ctx.store, item, page, position, give_up, deadline)


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
    page: _Page,
    lock_key: str,
    after: str,
    give_up: float,
    deadline: float,
) -> Reply:
    """Operations of one lock key after `after`, READ_CHUNK states per round trip."""
    while True:
        chunk = min(READ_CHUNK, page.limit - len(page.items))
        states, following = await store.pending_for_lock(lock_key, after, chunk, deadline)
        for operation_id, raw in states:
            found = item(lock_key, operation_id, raw)
            if found is not None and not page.take(found):
                return page.reply(after)  # the frame is full: this one comes first next time
            after = operation_id
        if following is None or page.full:
            return page.reply(following)
        after = following
        if loop_time() >= give_up:
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
    page: _Page,
    position: tuple[int, int, int],
    give_up: float,
    deadline: float,
) -> dict[str, Any]:
    node, scan_cursor, skip = position
    nodes = await store.scan_node_count()
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
                found = item(*keys.parse_state_key(store.prefix, name.decode()), raw)
                if found is not None and not page.take(found):  # the frame is full: first next time
                    return page.reply(f"{node}.{scan_cursor}:{skip + taken - 1}")
                if page.full:
                    if taken < len(names):
                        return page.reply(f"{node}.{scan_cursor}:{skip + taken}")
                    return page.reply(_cursor(following, nodes))
            done = start + len(chunk)
            if loop_time() >= give_up and done < len(names):
                return page.reply(f"{node}.{scan_cursor}:{skip + done}")
        (node, scan_cursor), skip = following, 0
        if loop_time() >= give_up:
            return page.reply(_cursor(following, nodes))
    return page.reply(None)


def _cursor(position: tuple[int, int], nodes: int) -> str | None:
    node, scan_cursor = position
    return None if node >= nodes else f"{node}.{scan_cursor}:0"
