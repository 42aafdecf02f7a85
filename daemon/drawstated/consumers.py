"""The ops that read the outcome stream: `audit` (history), `outcomes` and `ack` (refund workers).

`outcomes` reads through a consumer group: each event goes to one consumer of the group and
stays pending until that consumer acknowledges it (`ack`), so a refund worker that dies mid-way
gets its events again (the same consumer name first asks for its own pending ones; another can
take them over with `claim_idle_ms`). A page ends before its reply would outgrow a frame; what
was read past that point is pending for the consumer and comes first next time.

Memory stays bounded whatever the stream holds: entries are read READ_BATCH at a time (each may
carry a state), an `audit` page too ends before its reply would outgrow a frame, and a filtered
`audit` (by lock key) stops scanning at SCAN_TIME_SHARE of its deadline; either way the reply
has a cursor to go on from.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import msgpack

from drawstate.limits import INT64_MAX, Limits
from drawstated import errors, requests
from drawstated.outcomes import Entry, OutcomeStream, event_item
from drawstated.store import READ_CHUNK

#: Stream entries read per round trip by `audit` and `outcomes`: each may carry a whole state.
READ_BATCH = READ_CHUNK
#: A filtered `audit` returns what it found, with a cursor, past this share of its deadline.
SCAN_TIME_SHARE = 0.5
_STREAM_ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # ASCII digits: Redis reads no others
#: Each half of a stream id is an unsigned 64-bit number.
STREAM_ID_PART_MAX = 2**64 - 1
LAST_STREAM_ID = f"{STREAM_ID_PART_MAX}-{STREAM_ID_PART_MAX}"
#: Consumer group and consumer names: short, and nothing that needs quoting anywhere.
NAME_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: Most ids one `ack` takes.
MAX_ACK_IDS = 1000
#: Longest `claim_idle_ms`: a day.
MAX_CLAIM_IDLE_MS = 86_400_000
#: Room kept in a reply frame for its envelope.
FRAME_HEADROOM_BYTES = 4096
#: While `block_ms` waits for new events, the pause between reads grows from the first to the last.
POLL_FIRST_S = 0.01
POLL_MAX_S = 0.1


def stream_id(value: object) -> bool:
    return (
        type(value) is str
        and _STREAM_ID_RE.fullmatch(value) is not None
        and all(int(part) <= STREAM_ID_PART_MAX for part in value.split("-"))
    )


def _name(request: Mapping[str, Any], field: str) -> str:
    value = request.get(field)
    if type(value) is not str or not NAME_RE.fullmatch(value):
        raise errors.invalid(f"{field} must be 1-64 of A-Z a-z 0-9 _ . : -")
    return value


async def read_history(
    stream: OutcomeStream, limits: Limits, max_frame_bytes: int, request: Mapping[str, Any], deadline: float
) -> dict[str, Any]:
    """The `audit` op: events oldest first, from `since` (unix s) or after `cursor`, filtered by lock key.

    `cursor` in the reply is the id of the last event this page looked at (returned or filtered
    out); None once the stream's end was reached.
    """
    limit = requests.pending_limit(request)
    since = requests.optional_int(request, "since", 0, INT64_MAX // 1000)
    cursor = requests.optional_str(request, "cursor", requests.MAX_CURSOR_CHARS)
    lock_key = requests.lock_key(request, limits) if request.get("lock_key") is not None else None
    if cursor is not None and (not stream_id(cursor) or cursor == LAST_STREAM_ID):
        raise errors.invalid("cursor is not one this daemon returned")  # nothing follows the last id
    wanted = None if lock_key is None else lock_key.encode()
    page = _Page(limits, max_frame_bytes - FRAME_HEADROOM_BYTES, limit)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + (deadline - loop.time()) * SCAN_TIME_SHARE
    looked_at = cursor
    start = f"({cursor}" if cursor else f"{(since or 0) * 1000}-0"
    while True:
        entries = await stream.read_range(start, READ_BATCH, deadline)
        for entry_id, fields in entries:
            if wanted is None or fields.get(b"lock_key") == wanted:  # filtered before it is decoded
                if not page.take(entry_id, fields):
                    return {"items": page.items, "cursor": looked_at}  # the frame is full: next time
                if page.full:
                    return {"items": page.items, "cursor": entry_id.decode()}
            looked_at = entry_id.decode()
        if len(entries) < READ_BATCH:
            return {"items": page.items, "cursor": None}
        start = f"({looked_at}"
        if loop.time() >= give_up:
            return {"items": page.items, "cursor": looked_at}


async def read_outcomes(
    stream: OutcomeStream, limits: Limits, max_frame_bytes: int, request: Mapping[str, Any], deadline: float
) -> dict[str, Any]:
    """The `outcomes` op: this consumer's unacknowledged events first, then claimed, then new ones."""
    group, consumer = _name(request, "group"), _name(request, "consumer")
    limit = requests.pending_limit(request)
    block_ms = requests.optional_int(request, "block_ms", 0, INT64_MAX)
    claim_idle_ms = requests.optional_int(request, "claim_idle_ms", 1, MAX_CLAIM_IDLE_MS)
    page = _Page(limits, max_frame_bytes - FRAME_HEADROOM_BYTES, limit)
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
    loop = asyncio.get_running_loop()
    if block_ms and not page.items:
        # Polled, not XREADGROUP BLOCK: a blocking read would hold a pooled Redis connection
        # that every other request shares.
        until = min(deadline, loop.time() + block_ms / 1000)
        pause = POLL_FIRST_S
        while not page.items and loop.time() + pause < until:
            await asyncio.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)
            page.add(await stream.read_group(group, consumer, ">", min(page.room, READ_BATCH), deadline))
    return {"items": page.items}


async def acknowledge(stream: OutcomeStream, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
    """The `ack` op: these events are handled; they leave the group's pending list."""
    group = _name(request, "group")
    ids = request.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ACK_IDS or not all(map(stream_id, ids)):
        raise errors.invalid(f"ids must be a list of 1-{MAX_ACK_IDS} stream ids (<ms>-<seq>)")
    return {"acked": await stream.ack(group, ids, deadline)}


class _Page:
    """Items of one `audit` or `outcomes` reply: each id once, and never more than a frame holds."""

    def __init__(self, limits: Limits, max_bytes: int, limit: int) -> None:
        self.limits = limits
        self.max_bytes = max_bytes
        self.limit = limit
        self.items: list[dict[str, Any]] = []
        self.size = 0
        self.full = False
        self._seen: set[bytes] = set()

    @property
    def room(self) -> int:
        return 0 if self.full else self.limit - len(self.items)

    def add(self, entries: list[Entry]) -> None:
        for entry_id, fields in entries:
            if not self.full and entry_id not in self._seen:
                self.take(entry_id, fields)  # one that does not fit was read: pending, first next time

    def take(self, entry_id: bytes, fields: Mapping[bytes, bytes]) -> bool:
        """Add one entry; False (and full) when its item would outgrow the frame."""
        item = event_item(entry_id, fields, self.limits)
        size = len(msgpack.packb(item))
        if self.items and self.size + size > self.max_bytes:
            self.full = True
            return False
        self._seen.add(entry_id)
        self.items.append(item)
        self.size += size
        if len(self.items) >= self.limit:
            self.full = True
        return True
