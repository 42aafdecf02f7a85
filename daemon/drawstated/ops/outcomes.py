"""The ops refund workers read the outcome stream with: `outcomes` and `ack`.

`outcomes` reads through a consumer group: each event goes to one consumer of the group and stays
pending until that consumer acknowledges it (`ack`), so a refund worker that dies mid-way gets its
events again (the same consumer name first gets its own pending ones; another can take them over
with `claim_idle_ms`). A page ends before its reply would outgrow a frame; what was read past that
point is pending for the consumer and comes first next time.
"""

from __future__ import annotations

import asyncio
import re

from drawstate.limits import INT64_MAX
from drawstated import errors
from drawstated.ops import fields
from drawstated.ops.context import OpContext, Reply, Request, loop_time
from drawstated.ops.events import READ_BATCH, EventPage, stream_id

#: Consumer group and consumer names: short, and nothing that needs quoting anywhere.
NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: Most ids one `ack` takes.
MAX_ACK_IDS = 1000
#: Longest `claim_idle_ms`: a day.
MAX_CLAIM_IDLE_MS = 86_400_000
#: While `block_ms` waits for new events, the pause between reads grows from the first to the last.
POLL_FIRST_S = 0.01
POLL_MAX_S = 0.1


def _name(request: Request, field: str) -> str:
    value = request.get(field)
    if type(value) is not str or not NAME_RE.fullmatch(value):
        raise errors.invalid(f"{field} must be 1-64 of A-Z a-z 0-9 _ . : -")
    return value


class Outcomes:
    """This consumer's unacknowledged events first, then ones claimed from idle consumers, then new ones."""

    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        stream = self.ctx.stream
        group, consumer = _name(request, "group"), _name(request, "consumer")
        limit = fields.pending_limit(request)
        block_ms = fields.optional_int(request, "block_ms", 0, INT64_MAX)
        claim_idle_ms = fields.optional_int(request, "claim_idle_ms", 1, MAX_CLAIM_IDLE_MS)
        page = EventPage(self.ctx.limits, self.ctx.config.max_frame_bytes, limit)
        after = "0"  # this consumer's unacknowledged entries, a batch at a time
        while page.room:
            entries = await stream.read_group(group, consumer, after, min(page.room, READ_BATCH), deadline)
            page.add(entries)
            if len(entries) < READ_BATCH:
                break
            after = entries[-1][0].decode()
        while claim_idle_ms is not None and page.room:
            count = min(page.room, READ_BATCH)
            entries = await stream.claim_idle(group, consumer, claim_idle_ms, count, deadline)
            page.add(entries)
            if len(entries) < count:
                break
        while page.room:
            count = min(page.room, READ_BATCH)
            entries = await stream.read_group(group, consumer, ">", count, deadline)
            page.add(entries)
            if len(entries) < count:
                break
        if block_ms and not page.items:
            # Polled, not XREADGROUP BLOCK: a blocking read would hold a pooled Redis connection
            # that every other request shares.
            until = min(deadline, loop_time() + block_ms / 1000)
            pause = POLL_FIRST_S
            while not page.items and loop_time() + pause < until:
                await asyncio.sleep(pause)
                pause = min(pause * 2, POLL_MAX_S)
                page.add(await stream.read_group(group, consumer, ">", min(page.room, READ_BATCH), deadline))
        return {"items": page.items}


class Ack:
    """These events are handled: they leave the group's pending list."""

    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        group = _name(request, "group")
        ids = request.get("ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ACK_IDS or not all(map(stream_id, ids)):
            raise errors.invalid(f"ids must be a list of 1-{MAX_ACK_IDS} stream ids (<ms>-<seq>)")
        return {"acked": await self.ctx.stream.ack(group, ids, deadline)}
