"""The `pending` op: live operations of one lock key, or of every lock key, a page at a time.

One lock key walks its index (pending.lua, ordered by operation id; the cursor
is the last id returned). Every lock key walks SCAN with a match pattern, never
KEYS, on every master of a Cluster in turn; its opaque cursor is
"<node>.<scan cursor>:<keys of that step already returned>", so a page can end
in the middle of a SCAN step without losing the rest.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Container, Mapping
from typing import Any

from drawstate.limits import INT64_MAX, Limits
from drawstated import errors, keys, requests
from drawstated.store import Store

ItemFn = Callable[[tuple[str, str], bytes], "dict[str, Any] | None"]
_SCAN_CURSOR_RE = re.compile(r"(\d{1,4})\.(\d{1,20}):(\d{1,9})")
#: A page of the all-keys walk returns early (with a cursor) past this share of its deadline.
PAGE_TIME_SHARE = 0.5


async def list_pending(
    store: Store,
    limits: Limits,
    item: ItemFn,
    deferred: Container[tuple[str, str]],
    request: Mapping[str, Any],
    deadline: float,
) -> dict[str, Any]:
    limit = requests.pending_limit(request)
    older_than = requests.optional_int(request, "older_than_s", 0, INT64_MAX)
    cursor = requests.optional_str(request, "cursor", 64)
    now = int(time.time())

    def keep(found: dict[str, Any] | None) -> bool:
        if found is None or (found["lock_key"], found["operation_id"]) in deferred:
            return False
        return older_than is None or now - found["last_update_time"] >= older_than

    if request.get("lock_key") is not None:
        lock_key = requests.lock_key(request, limits)
        after = cursor or ""
        if after:
            requests.operation_id({"operation_id": after}, limits, required=True)
        return await _one_lock(store, item, keep, lock_key, after, limit, deadline)
    return await _all_locks(store, item, keep, store.prefix, cursor, limit, deadline)


async def _one_lock(
    store: Store,
    item: ItemFn,
    keep: Callable[[dict[str, Any] | None], bool],
    lock_key: str,
    after: str,
    limit: int,
    deadline: float,
) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    while True:
        page, following = await store.pending_for_lock(lock_key, after, limit - len(items), deadline)
        for operation_id, raw in page:
            found = item((lock_key, operation_id), raw)
            if found is not None and keep(found):
                items.append(found)
        if following is None or len(items) >= limit:
            return {"items": items, "cursor": following}
        after = following


async def _all_locks(
    store: Store,
    item: ItemFn,
    keep: Callable[[dict[str, Any] | None], bool],
    prefix: str,
    cursor: str | None,
    limit: int,
    deadline: float,
) -> dict[str, Any]:
    node, scan_cursor, skip = 0, 0, 0
    if cursor:
        match = _SCAN_CURSOR_RE.fullmatch(cursor)
        if match is None:
            raise errors.invalid("cursor is not one this daemon returned")
        node, scan_cursor, skip = int(match[1]), int(match[2]), int(match[3])
    nodes = await store.scan_node_count()
    loop = asyncio.get_running_loop()
    soft_deadline = loop.time() + (deadline - loop.time()) * PAGE_TIME_SHARE
    items: list[dict[str, Any]] = []
    while node < nodes:
        next_cursor, names = await store.scan_states(node, scan_cursor, deadline)
        names = sorted(names)[skip:]  # sorted, so a repeated step skips the same keys
        raws = await store.get_many(names, deadline)
        following = (node, next_cursor) if next_cursor else (node + 1, 0)
        for taken, (name, raw) in enumerate(zip(names, raws, strict=True), start=1):
            if raw is None:
                continue  # expired between SCAN and GET
            found = item(keys.parse_state_key(prefix, name.decode()), raw)
            if keep(found):
                assert found is not None
                items.append(found)
            if len(items) == limit:
                if taken < len(names):
                    return {"items": items, "cursor": f"{node}.{scan_cursor}:{skip + taken}"}
                return {"items": items, "cursor": _cursor(following, nodes)}
        (node, scan_cursor), skip = following, 0
        if loop.time() >= soft_deadline:
            return {"items": items, "cursor": _cursor(following, nodes)}
    return {"items": items, "cursor": None}


def _cursor(position: tuple[int, int], nodes: int) -> str | None:
    node, scan_cursor = position
    return None if node >= nodes else f"{node}.{scan_cursor}:0"
