"""Pages of outcome events, shared by `audit` and `outcomes`: stream ids, and a reply that fits a frame.

Memory stays bounded whatever the stream holds: entries are read READ_BATCH at a time (each may
carry a whole state), and a page ends before its reply would outgrow a frame; what did not fit
comes first next time (a cursor for `audit`, the consumer's pending list for `outcomes`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgpack

from drawstate.limits import Limits
from drawstated.ops.context import FRAME_HEADROOM_BYTES
from drawstated.storage.store import READ_CHUNK
from drawstated.storage.stream import Entry, event_item

#: Stream entries read per round trip by `audit` and `outcomes`: each may carry a whole state.
READ_BATCH = READ_CHUNK
#: Each half of a stream id is an unsigned 64-bit number.
STREAM_ID_PART_MAX = 2**64 - 1
LAST_STREAM_ID = f"{STREAM_ID_PART_MAX}-{STREAM_ID_PART_MAX}"
_STREAM_ID_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # ASCII digits: Redis reads no others


def stream_id(value: object) -> bool:
    """Whether `value` is a stream id Redis would take (<ms>-<seq>, each part 64-bit)."""
    return (
        type(value) is str
        and _STREAM_ID_RE.fullmatch(value) is not None
        and all(int(part) <= STREAM_ID_PART_MAX for part in value.split("-"))
    )


class EventPage:
    """Items of one `audit` or `outcomes` reply: each id once, and never more than a frame holds."""

    def __init__(self, limits: Limits, max_frame_bytes: int, limit: int) -> None:
        self.limits = limits
        self.max_bytes = max_frame_bytes - FRAME_HEADROOM_BYTES
        self.limit = limit
        self.items: list[dict[str, Any]] = []
        self.size = 0
        self.full = False
        self._seen: set[bytes] = set()

    @property
    def room(self) -> int:
        return 0 if self.full else self.limit - len(self.items)

    def add(self, entries: list[Entry]) -> None:
        for entry_id, entry in entries:
            if not self.full and entry_id not in self._seen:
                self.take(entry_id, entry)  # one that does not fit was read: pending, first next time

    def take(self, entry_id: bytes, entry: Mapping[bytes, bytes]) -> bool:
        """Add one entry; False (and full) when its item would outgrow the frame."""
        item = event_item(entry_id, entry, self.limits)
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
