"""The outcome stream: every operation's end, written once, read by refund workers and operators.

Events live in the Redis stream `{prefix}:audit`. The scripts that end an operation write its
event themselves where the stream shares their node; elsewhere (Cluster), or when that write
failed, the tombstone's outbox marker stays and the event is written here: by the daemon that
ended the operation right after (`Publisher`), or by any daemon's sweeper once that daemon's
lease is over. Either way the event is built from the tombstone alone, so a repeat is identical
apart from its stream id.

Consumers read through consumer groups (the `outcomes` op), so each event reaches a refund worker
at least once and stays pending until acknowledged (`ack`); `audit` reads the same stream as
history. Trimming never passes an event some group still owes (trim.lua).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from drawstate.limits import Limits
from drawstate.model import InvalidState
from drawstated import keys
from drawstated.codec import decode_state
from drawstated.errors import RequestError
from drawstated.redis.commands import Commands
from drawstated.redis.errors import BusyGroupError, NoGroupError
from drawstated.storage.store import OutboxStatus, PublishMode, Store

log = logging.getLogger("drawstated.storage.stream")

#: Terminal events: every operation ever saved ends in exactly one of these.
COMPLETE, ROLLBACK, EXPIRE = "complete", "rollback", "expire"
#: A deferred rollback that found the operation already ended another way: for the operator only.
ROLLBACK_SUPERSEDED = "rollback-superseded"
#: Cap on the raw text of an unreadable state kept in an event item (for a manual refund).
RAW_STATE_CHARS = 16_384
#: Deadline of one background attempt to write an event.
PUBLISH_DEADLINE_S = 2.0
#: Background attempts at one event (PUBLISH_RETRY_S apart, growing) before the sweepers take it.
PUBLISH_ATTEMPTS = 5
PUBLISH_RETRY_S = 1.0
_BOOL_FIELDS = frozenset({"existed", "refunded_by_caller", "deferred"})
_INT_FIELDS = frozenset({"time", "completed_count", "total_count", "errors"})
_JSON_FIELDS = frozenset({"results", "prize_results", "metadata", "failed_draws"})

Entry = tuple[bytes, dict[bytes, bytes]]


class OutcomeStream:
    """Commands on the stream itself: append, read, consumer groups, trim."""

    def __init__(self, commands: Commands, prefix: str) -> None:
        self.commands = commands
        self.key = keys.audit_key(prefix)

    async def append(self, fields: Sequence[Any], deadline: float) -> bytes:
        """XADD one event (flat field list); returns its id."""
        entry_id: bytes = await self.commands.run(deadline, "XADD", self.key, "*", *fields)
        return entry_id

    async def read_range(self, start: str, count: int, deadline: float) -> list[Entry]:
        return _entries(await self.commands.run(deadline, "XRANGE", self.key, start, "+", "COUNT", count))

    async def read_reverse(self, end: str, count: int, deadline: float) -> list[Entry]:
        """XREVRANGE: up to `count` entries from `end` ("+", or "(<id>") back, newest first."""
        return _entries(await self.commands.run(deadline, "XREVRANGE", self.key, end, "-", "COUNT", count))

    async def read_group(
        self, group: str, consumer: str, start: str, count: int, deadline: float
    ) -> list[Entry]:
        """XREADGROUP: start "0" re-reads this consumer's unacknowledged entries, ">" takes new ones.

        The group is created (from the stream's start, so nothing retained is missed) on first use.
        """
        command = ("XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", self.key, start)
        try:
            reply = await self.commands.run(deadline, *command)
        except NoGroupError:
            await self.create_group(group, deadline)
            reply = await self.commands.run(deadline, *command)
        if not reply:
            return []
        return _entries(reply[0][1])

    async def create_group(self, group: str, deadline: float) -> None:
        with contextlib.suppress(BusyGroupError):  # another reader created it first
            await self.commands.run(deadline, "XGROUP", "CREATE", self.key, group, "0", "MKSTREAM")

    async def claim_idle(
        self, group: str, consumer: str, min_idle_ms: int, count: int, deadline: float
    ) -> list[Entry]:
        """XAUTOCLAIM: take over entries other consumers left unacknowledged for `min_idle_ms`."""
        try:
            reply = await self.commands.run(
                deadline, "XAUTOCLAIM", self.key, group, consumer, min_idle_ms, "0-0", "COUNT", count
            )
        except NoGroupError:
            return []
        return _entries(reply[1])

    async def ack(self, group: str, ids: Sequence[str], deadline: float) -> int:
        return int(await self.commands.run(deadline, "XACK", self.key, group, *ids))

    async def trim(self, cap: int, batch: int, deadline: float) -> tuple[int, int, bool]:
        """trim.lua: (removed, length after, held back by a group that still owes events)."""
        reply = await self.commands.script("trim", deadline, [self.key], [cap, batch])
        return int(reply[0]), int(reply[1]), reply[2] == 1

    async def length(self, deadline: float) -> int:
        return int(await self.commands.run(deadline, "XLEN", self.key))


class Publisher:
    """Writes the events the closing scripts left in the outbox, in the background, with retries.

    Only the daemon that ended an operation schedules it here, and only when its script could not
    write the event (Cluster, or an XADD Redis refused). If this daemon dies or loses Redis first,
    another daemon's sweeper writes it once the lease in the marker is over.
    """

    def __init__(self, store: Store, stream: OutcomeStream) -> None:
        self.store = store
        self.stream = stream
        self._queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        #: Events this publisher wrote (for stats).
        self.published = 0

    def schedule(self, lock_key: str, operation_id: str, attempt: int = 1) -> None:
        self._queue.put_nowait((lock_key, operation_id, attempt))

    def __len__(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outcome-publisher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            lock_key, operation_id, attempt = await self._queue.get()
            where = {"lock_key": lock_key, "operation_id": operation_id}
            try:
                await publish(
                    self.store, self.stream, lock_key, operation_id, "owner", loop.time() + PUBLISH_DEADLINE_S
                )
            except Exception as exc:  # retried here a few times, then by the sweepers
                if attempt >= PUBLISH_ATTEMPTS:
                    outage = isinstance(exc, RequestError) and exc.retryable  # said once by OutageLog
                    log.log(
                        logging.DEBUG if outage else logging.WARNING,
                        "outcome event left to the sweepers",
                        extra={**where, "error": type(exc).__name__},
                    )
                    continue
                loop.call_later(PUBLISH_RETRY_S * attempt, self.schedule, lock_key, operation_id, attempt + 1)
            else:
                self.published += 1


async def publish(
    store: Store,
    stream: OutcomeStream,
    lock_key: str,
    operation_id: str,
    mode: PublishMode,
    deadline: float,
) -> OutboxStatus:
    """Write one ended operation's event if it is not in the stream yet: outbox.lua, XADD, mark it.

    Returns what happened: "published", "gone" (written or gone already), "leased" (another daemon
    owns it for now). A crash between XADD and marking it repeats the event, identically.
    """
    outcome = await store.outbox(lock_key, operation_id, mode, deadline)
    if isinstance(outcome, str):
        return outcome
    await stream.append(outcome, deadline)
    await store.mark_published(lock_key, operation_id, deadline)
    return "published"


def event_item(entry_id: bytes, fields: Mapping[bytes, bytes], limits: Limits) -> dict[str, Any]:
    """An event as `audit` and `outcomes` return it: flat fields, the state's parts decoded."""
    item: dict[str, Any] = {"id": entry_id.decode()}
    raw_state: bytes | None = None
    for name, value in fields.items():
        key = name.decode()
        if key == "state":
            raw_state = value
        elif key in _BOOL_FIELDS:
            item[key] = value == b"1"
        elif key in _INT_FIELDS:
            item[key] = int(value)
        elif key in _JSON_FIELDS:
            item[key] = orjson.loads(value)  # events written by earlier versions
        else:
            item[key] = value.decode(errors="replace")
    item.setdefault("refunded_by_caller", False)
    item.setdefault("deferred", False)
    if item.get("event") == "deferred-cleanup":  # an earlier version's name for an applied deferred rollback
        item["event"], item["deferred"] = ROLLBACK, True
    if raw_state:
        item.update(state_fields(raw_state, limits))
    return item


def state_fields(raw: bytes, limits: Limits) -> dict[str, Any]:
    """What an event says of the state it carries: counts, draws granted, failed draws, metadata."""
    try:
        state = decode_state(raw, limits)
    except InvalidState:
        return {"corrupted_state": raw[:RAW_STATE_CHARS].decode(errors="replace")}
    failed = [error["draw_index"] for error in state.get("errors") or ()]
    return {
        "completed_count": state["completed_count"],
        "total_count": state["total_count"],
        "errors": len(failed),
        "failed_draws": failed,
        "results": state.get("results") or [],
        "prize_results": state.get("prize_results") or [],
        "metadata": state.get("metadata") or {},
    }


def superseded_event(lock_key: str, operation_id: str, reason: str, closed_by: str, at_s: int) -> list[Any]:
    """The non-terminal event of a deferred rollback that found the operation ended another way."""
    return [
        "event", ROLLBACK_SUPERSEDED,
        "lock_key", lock_key,
        "operation_id", operation_id,
        "time", at_s,
        "reason", reason,
        "existed", "0",
        "refunded_by_caller", "0",
        "deferred", "1",
        "closed_by", closed_by,
    ]  # fmt: skip


def _entries(raw: Any) -> list[Entry]:
    """Stream entries as (id, field map); an entry trimmed away under a pending id has no fields."""
    entries: list[Entry] = []
    for entry_id, flat in raw:
        if flat is None:
            continue
        entries.append((entry_id, dict(zip(flat[::2], flat[1::2], strict=True))))
    return entries
