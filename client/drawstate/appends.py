"""Saves that send only the draws they add: what a client remembers of its last save per operation.

A save carries the whole state, so saving a 1000-draw state costs the client, the daemon and the
socket about a hundred times what a 10-draw one does, though each save adds a draw or two. So
the daemon remembers the state Redis last accepted from it for each operation and, when a save
asks (`want_base`), answers with that state's `base`. A client remembers, per operation, the
lists it sent and that base; when the next save of the operation still starts with those lists
and keeps its fixed fields, it sends only what follows them (`append`). The daemon splices them
into the state it holds, which gives byte for byte the whole state's text, and checks them as it
checks any save that extends a state it accepted. Or it answers `base_unknown` (it restarted,
forgot the state, or another save came between), and the client sends the whole state within the
same call. Redis stores the same state and answers the same either way (protocol.md §7.2).

Only DrawState objects passed to Client.save and AsyncClient.save are sent this way (MultiDraw
and AsyncMultiDraw pass theirs): their prizes and failed draws are frozen, so the lists sent can
be kept by reference and compared in C, element by element, by identity first. A dict state is
sent whole every time, as its prizes are dicts a caller may change in place. So is a
small state (fewer than `MIN_ITEMS_TO_APPEND` items): sending it whole costs no more than
remembering and comparing it would (docs/benchmarks.md, "Saves that send only what they add").
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from typing import Any

from drawstate import ops
from drawstate.model import DrawState
from drawstate.results import Durability

#: Operations a client remembers its last save of; the least recently saved is forgotten first.
MAX_REMEMBERED_SAVES = 256
#: Items (results, plus 5 per prize and 4 per failed draw: what msgpack and JSON carry) from which
#: a DrawState's saves are sent as appends; below it a whole save is as cheap.
MIN_ITEMS_TO_APPEND = 128


def items(state: DrawState) -> int:
    """What a state's draw lists weigh on the wire, in msgpack items."""
    return len(state.results) + 5 * len(state.prize_results) + 4 * len(state.errors)


def _starts_with(items: list[Any], prefix: list[Any]) -> bool:
    """Whether `items` begins with `prefix` (both lists of a snapshot)."""
    return len(items) >= len(prefix) and items[: len(prefix)] == prefix


class PlannedSave:
    """One logical save: the request to send first, and the whole state's if the daemon asks for it.

    Every request it makes carries the same token, so however it is sent it counts as one save.
    """

    __slots__ = ("_bases", "_fields", "_sent", "_started", "_whole", "request")

    def __init__(self, bases: Bases, state: DrawState | Any, fields: dict[str, Any]) -> None:
        self._bases, self._fields = bases, fields
        self._started = time.monotonic()
        appendable = isinstance(state, DrawState) and items(state) >= bases.min_items
        # The state as this save began: whatever the caller does to its DrawState while the call is
        # under way (an asyncio task saving it while the next draw is recorded, another thread),
        # every request of this save, and what the client remembers of it, are this copy.
        self._sent = state.copy() if appendable else None
        #: The whole state's request, made now unless the state is kept in `_sent` to make it from.
        self._whole = None if self._sent is not None else ops.save(state, **fields)
        previous = bases.last(self._sent)
        self.request = self.whole() if previous is None else self._append(*previous)

    def whole(self) -> ops.Request:
        """The save of the whole state as it was when planned (asking for its base if it was kept)."""
        if self._whole is not None:
            return self._whole
        assert self._sent is not None
        return ops.save(self._sent, want_base=True, **self._fields)

    def _append(self, previous: DrawState, base: str) -> ops.Request:
        sent = self._sent
        assert sent is not None
        append: dict[str, Any] = {
            "lock_key": sent.lock_key,
            "operation_id": sent.operation_id,
            "base": base,
            "completed_count": sent.completed_count,
            "last_update_time": sent.last_update_time,
        }
        if len(sent.results) > len(previous.results):
            append["results"] = sent.results[len(previous.results) :]
        if len(sent.prize_results) > len(previous.prize_results):
            append["prize_results"] = [
                prize.to_dict() for prize in sent.prize_results[len(previous.prize_results) :]
            ]
        if len(sent.errors) > len(previous.errors):
            append["errors"] = [error.to_dict() for error in sent.errors[len(previous.errors) :]]
        return ops.save_append(append, **self._fields)

    def remaining(self, timeout: float) -> float:
        """What is left of the call's `timeout` for sending the whole state after base_unknown."""
        left = timeout - (time.monotonic() - self._started)
        return left if left > 0 else math.ulp(1.0)

    def saved(self, reply: ops.Reply) -> None:
        """The daemon saved it: remember what was sent and its base, if it answered one."""
        self._bases.remember(self._sent, reply.get("base"))

    def failed(self) -> None:
        """Not known saved (refused, in doubt, unreachable): the next save sends the whole state."""
        self._bases.remember(self._sent, None)


class Bases:
    """Per operation, the last save a client sent of a DrawState and the base the daemon answered.

    Thread-safe: Client's threads share one.
    """

    __slots__ = ("_entries", "_lock", "max_entries", "min_items")

    def __init__(self, max_entries: int = MAX_REMEMBERED_SAVES, min_items: int = MIN_ITEMS_TO_APPEND) -> None:
        self.max_entries = max_entries
        self.min_items = min_items
        self._entries: OrderedDict[tuple[str, str], tuple[DrawState, str]] = OrderedDict()
        self._lock = threading.Lock()

    def plan(
        self,
        state: DrawState | Any,
        *,
        expect_version: int | None,
        ttl_s: int | None,
        token: str | None,
        durability: Durability | None,
    ) -> PlannedSave:
        fields = {
            "expect_version": expect_version,
            "ttl_s": ttl_s,
            "token": token or ops.new_token(),
            "durability": durability,
        }
        return PlannedSave(self, state, fields)

    def last(self, sent: DrawState | None) -> tuple[DrawState, str] | None:
        """The last save of `sent`'s operation and its base, if `sent` extends it."""
        if sent is None:
            return None
        with self._lock:
            entry = self._entries.get((sent.lock_key, sent.operation_id))
        return entry if entry is not None and _extends(entry[0], sent) else None

    def remember(self, sent: DrawState | None, base: object) -> None:
        if sent is None:
            return
        key = (sent.lock_key, sent.operation_id)
        with self._lock:
            self._entries.pop(key, None)
            if type(base) is str and self.max_entries > 0:
                self._entries[key] = (sent, base)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)


def _extends(previous: DrawState, sent: DrawState) -> bool:
    """Whether `sent` keeps `previous`'s fixed fields and starts each draw list with its draws."""
    return (
        type(sent.total_count) is int
        and type(sent.start_time) is int
        and (sent.total_count, sent.start_time, sent.metadata)
        == (previous.total_count, previous.start_time, previous.metadata)
        and _starts_with(sent.results, previous.results)
        and _starts_with(sent.prize_results, previous.prize_results)
        and _starts_with(sent.errors, previous.errors)
    )
