"""The in-flight byte budget: what the daemon holds for its clients, bounded per connection and in total.

Held, per connection: bytes read but not yet decoded (its frame buffer), the requests in flight
(each charged its decoded cost, decoding.py, plus a reserve for the reply it may build), and the
replies written but not yet taken by the client (the transport's write buffer). Past the
per-connection budget a connection is not read until its own requests finish; past the total,
no connection is read (and no frame decoded) until the total is back under LOW_WATER of it.
Nothing is refused: a client just waits, as with the in-flight count cap.

Two exceptions keep the daemon live: a connection with nothing in flight may always start one
request (however large), and while no request at all is in flight, any connection may. A
connection paused by the total budget with half a frame is still closed by the partial-frame
timeout, so clients that park partial frames cannot hold the budget for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from drawstated.config import Config
from drawstated.storage.store import READ_CHUNK

#: Reading resumes once the total held is back under this share of the budget (no flapping).
LOW_WATER = 0.75
#: A state read from Redis, decoded into Python, checked and encoded into a reply takes up to this
#: many times its JSON size at the peak (measured: ~17 for a state of thousands of small prizes).
STATE_REPLY_FACTOR = 20
#: Raw states a page (pending, audit, outcomes) holds at once while it reads Redis.
PAGE_READ_CHUNK = READ_CHUNK
#: Ops whose reply holds one state: the state read (load), or removed (rollback, complete).
STATE_OPS = frozenset({"load", "rollback", "complete"})
#: Ops whose reply is a page of up to a frame, read from Redis a chunk at a time.
PAGE_OPS = frozenset({"pending", "audit", "outcomes"})


def reply_reserves(config: Config) -> dict[str, int]:
    """Bytes reserved, per op, for the reply a request of that op may build."""
    state = STATE_REPLY_FACTOR * config.limits.max_state_bytes + config.max_frame_bytes
    page = PAGE_READ_CHUNK * config.limits.max_state_bytes + state + config.max_frame_bytes
    return {**dict.fromkeys(STATE_OPS, state), **dict.fromkeys(PAGE_OPS, page)}


class MemoryBudget:
    """The total held for every connection, and the connections waiting for it to go down."""

    __slots__ = (
        "_resume_below",
        "_waiting",
        "_wake_scheduled",
        "held",
        "holding",
        "in_flight",
        "per_connection",
        "total",
    )

    def __init__(self, total: int, per_connection: int) -> None:
        self.total = total
        self.per_connection = per_connection
        self.held = 0
        #: Bytes charged to requests in flight (not frames or replies): zero means none runs.
        self.in_flight = 0
        self._resume_below = int(total * LOW_WATER)
        #: Callbacks that resume reading a paused connection, in the order they paused.
        self._waiting: dict[object, Callable[[], None]] = {}
        #: Every connection was paused at once (set by the server state, cleared by a wake-up).
        self.holding = False
        self._wake_scheduled = False

    def full(self) -> bool:
        """No new frame may be read or decoded (unless no request at all is in flight)."""
        return self.held >= self.total and self.in_flight > 0

    def over(self) -> bool:
        return self.held >= self.total

    def wait(self, key: object, resume: Callable[[], None]) -> None:
        self._waiting[key] = resume

    def forget(self, key: object) -> None:
        self._waiting.pop(key, None)

    def change(self, delta: int) -> None:
        self.held += delta
        if delta < 0 and self._waiting and (self.held < self._resume_below or self.in_flight == 0):
            self._wake()  # with nothing in flight, waiting frames must be let in even over the mark

    def change_in_flight(self, delta: int) -> None:
        self.in_flight += delta
        self.change(delta)
        if self.in_flight == 0 and self._waiting:
            self._wake()  # nothing runs: someone must be let in, or nothing ever frees

    def _wake(self) -> None:
        """Resume the waiting connections soon: from the loop, never nested in whoever gave bytes back."""
        if not self._wake_scheduled:
            self._wake_scheduled = True
            asyncio.get_running_loop().call_soon(self._wake_now)

    def _wake_now(self) -> None:
        self._wake_scheduled = False
        if self.held >= self._resume_below and self.in_flight > 0:
            return  # taken back over meanwhile: the next release wakes them
        self.holding = False
        waiting, self._waiting = self._waiting, {}
        for resume in waiting.values():
            resume()  # may pause again (and wait) if it takes the budget back over
