"""The `audit` op: outcome events oldest first, from `since` (unix s) or after `cursor`, by lock key.

A filtered page (one lock key) filters entries before decoding them, and stops scanning at
SCAN_TIME_SHARE of its deadline; the reply's `cursor` is the id of the last event this page looked
at (returned or filtered out), None once the stream's end was reached.

With `newest: true` the page is the newest `limit` events instead (read backwards from the end,
returned oldest first, like `tail -n`), and its `cursor` is the newest id in the stream when it was
read: the cursor to follow from.
"""

from __future__ import annotations

from drawstate.limits import INT64_MAX
from drawstated import errors
from drawstated.ops import fields
from drawstated.ops.context import OpContext, Reply, Request, loop_time
from drawstated.ops.events import LAST_STREAM_ID, READ_BATCH, EventPage, stream_id

#: A filtered `audit` returns what it found, with a cursor, past this share of its deadline.
SCAN_TIME_SHARE = 0.5


class Audit:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        ctx = self.ctx
        limit = fields.pending_limit(request)
        since = fields.optional_int(request, "since", 0, INT64_MAX // 1000)
        cursor = fields.optional_str(request, "cursor", fields.MAX_CURSOR_CHARS)
        lock_key = fields.lock_key(request, ctx.limits) if request.get("lock_key") is not None else None
        if cursor is not None and (not stream_id(cursor) or cursor == LAST_STREAM_ID):
            raise errors.invalid("cursor is not one this daemon returned")  # nothing follows the last id
        newest = fields.flag(request, "newest")
        if newest and (cursor is not None or since is not None):
            raise errors.invalid("newest reads back from the end: it takes neither cursor nor since")
        wanted = None if lock_key is None else lock_key.encode()
        page = EventPage(ctx.limits, ctx.config.max_frame_bytes, limit)
        now = loop_time()
        give_up = now + (deadline - now) * SCAN_TIME_SHARE
        if newest:
            return await self._newest(page, wanted, give_up, deadline)
        looked_at = cursor
        start = f"({cursor}" if cursor else f"{(since or 0) * 1000}-0"
        while True:
            entries = await ctx.stream.read_range(start, READ_BATCH, deadline)
            for entry_id, entry in entries:
                if wanted is None or entry.get(b"lock_key") == wanted:  # filtered before it is decoded
                    if not page.take(entry_id, entry):
                        return {"items": page.items, "cursor": looked_at}  # the frame is full: next time
                    if page.full:
                        return {"items": page.items, "cursor": entry_id.decode()}
                looked_at = entry_id.decode()
            if len(entries) < READ_BATCH:
                return {"items": page.items, "cursor": None}
            start = f"({looked_at}"
            if loop_time() >= give_up:
                return {"items": page.items, "cursor": looked_at}

    async def _newest(self, page: EventPage, wanted: bytes | None, give_up: float, deadline: float) -> Reply:
        """The newest events (of one lock key when `wanted`), read backwards a batch at a time."""
        end, following = "+", None
        while not page.full:
            entries = await self.ctx.stream.read_reverse(end, READ_BATCH, deadline)
            if entries and following is None:
                following = entries[0][0].decode()  # the stream's newest id: follow from there
            for entry_id, entry in entries:
                if page.full:
                    break  # `limit` taken, or the frame is full: these are the newest that fit
                if wanted is None or entry.get(b"lock_key") == wanted:
                    page.take(entry_id, entry)
            if len(entries) < READ_BATCH or loop_time() >= give_up:
                break
            end = f"({entries[-1][0].decode()}"
        page.items.reverse()  # oldest first, as every page
        return {"items": page.items, "cursor": following}
