"""Deferred rollbacks: a rollback Redis could not take in time is accepted, journaled and finished here.

The caller is answered `cleanup: "deferred"`, `final: false`: it does not refund; the outcome
stream will say who does once Redis has the rollback. So the rollback must happen later,
whatever comes: each one is written to a journal in the data dir (fsync) before the reply goes
out, retried in the background until Redis takes it, and replayed when the daemon starts. Until
then this daemon refuses to load or save that operation.

Other daemons sharing the Redis do not know of it: one may resume or complete the operation in
the meantime. When the rollback then reaches Redis, close.lua finds the operation ended and the
rollback records a `rollback-superseded` event for the operator instead, never a second ending.
If an earlier attempt of the same rollback (same token) had reached Redis after all, close.lua
records it as the rollback it was, refunded through the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Container
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from drawstated.errors import RequestError
from drawstated.outcomes import OutcomeStream, Publisher, superseded_event
from drawstated.store import Store

log = logging.getLogger("drawstated.cleanup")

JOURNAL_NAME = "deferred-rollbacks.jsonl"
#: The journal holds lock keys and reasons: private to the daemon's user.
JOURNAL_MODE = 0o600
#: Deadline of one background attempt to apply a deferred rollback.
ATTEMPT_DEADLINE_S = 2.0


@dataclass(frozen=True, slots=True)
class DeferredRollback:
    lock_key: str
    operation_id: str
    reason: str
    deferred_at: float
    #: The caller's rollback token: a repeat with it is answered "deferred" again.
    token: str = ""


Key = tuple[str, str]


class HiddenFromRead:
    """The operations a read must not return: deferred when it began, or at any time since.

    Checking only at the end is not enough: a rollback applied while the read
    was in flight is no longer pending, yet the read may have fetched the state
    before Redis deleted it, and the caller was told "rolled back" long before.
    """

    __slots__ = ("_at_start", "_live")

    def __init__(self, at_start: frozenset[Key], live: Container[Key]) -> None:
        self._at_start = at_start
        self._live = live

    def __contains__(self, key: object) -> bool:
        return key in self._at_start or key in self._live


class DeferredCleanup:
    """The journal of rollbacks still to apply, and the task that applies them."""

    def __init__(
        self, journal_path: Path, store: Store, stream: OutcomeStream, publisher: Publisher, retry_s: float
    ) -> None:
        self.journal_path = journal_path
        self._store = store
        self._stream = stream
        self._publisher = publisher
        self._retry_s = retry_s
        self._pending: dict[Key, DeferredRollback] = {}
        #: Applied rollbacks, and those that found the operation ended another way (for stats).
        self.applied = 0
        self.superseded = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def get(self, key: Key) -> DeferredRollback | None:
        return self._pending.get(key)

    def hidden_from_read(self) -> HiddenFromRead:
        """Take this before a read from Redis; check what it returns against it afterwards."""
        return HiddenFromRead(frozenset(self._pending), self)

    def replay_journal(self) -> int:
        """Read what a previous run left undone; returns how many rollbacks are pending."""
        if not self.journal_path.exists():
            return 0
        for line in self.journal_path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                entry = DeferredRollback(**orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError) as exc:
                log.error("skipping unreadable journal line", extra={"error": str(exc)})
                continue
            self._pending[entry.lock_key, entry.operation_id] = entry
        if self._pending:
            log.warning("replaying deferred rollbacks from journal", extra={"count": len(self._pending)})
        return len(self._pending)

    def add(self, entry: DeferredRollback) -> None:
        """Record a rollback to apply later: durable (fsync) first, then hidden from reads.

        OSError (a full disk, say) leaves nothing hidden and nothing half-promised: the caller
        answers a retryable error, and a resend tries again.
        """
        self.journal_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, JOURNAL_MODE)
        with os.fdopen(fd, "ab") as journal:
            journal.write(orjson.dumps(asdict(entry)) + b"\n")
            journal.flush()
            os.fsync(journal.fileno())
        self._pending[entry.lock_key, entry.operation_id] = entry
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="deferred-cleanup")

    async def stop(self) -> None:
        """Stop retrying; whatever is still pending stays in the journal for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            for entry in list(self._pending.values()):
                await self._apply(entry)
            if self._pending:
                await asyncio.sleep(self._retry_s)

    async def _apply(self, entry: DeferredRollback) -> None:
        deadline = asyncio.get_running_loop().time() + ATTEMPT_DEADLINE_S
        where = {"lock_key": entry.lock_key, "operation_id": entry.operation_id}
        try:
            outcome = await self._store.close_operation(
                "rollback",
                entry.lock_key,
                entry.operation_id,
                deadline,
                mode="deferred",
                token=entry.token,
                reason=entry.reason,
            )
        except RequestError as exc:
            closed_by = exc.details.get("closed_by")
            if not closed_by:
                log.debug("deferred rollback still pending", extra={**where, "error": exc.code})
                return
            # Ended another way meanwhile (resumed and completed elsewhere, another caller's
            # rollback, expiry): that ending stands; the operator gets a note, not a second ending.
            event = superseded_event(
                entry.lock_key, entry.operation_id, entry.reason, closed_by, int(time.time())
            )
            try:
                await self._stream.append(event, deadline)
            except RequestError:
                return  # kept in the journal: the note is written on a later attempt
            log.warning(
                "deferred rollback superseded: the operation had ended",
                extra={**where, "closed_by": closed_by},
            )
            self.superseded += 1
        else:
            if outcome.final == "1":
                log.warning("deferred rollback found its token already answered as final", extra=where)
            if not outcome.published:
                self._publisher.schedule(entry.lock_key, entry.operation_id)
            self.applied += 1
            log.info(
                "deferred rollback applied",
                extra={
                    **where,
                    "deferred_s": round(time.time() - entry.deferred_at, 3),
                    "existed": outcome.existed,
                },
            )
        self._pending.pop((entry.lock_key, entry.operation_id), None)
        self._rewrite_journal()

    def _rewrite_journal(self) -> None:
        """Replace the journal with what is still pending (write, fsync, rename)."""
        tmp = self.journal_path.with_suffix(".tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, JOURNAL_MODE), "wb") as journal:
            for entry in self._pending.values():
                journal.write(orjson.dumps(asdict(entry)) + b"\n")
            journal.flush()
            os.fsync(journal.fileno())
        os.replace(tmp, self.journal_path)

    def snapshot(self) -> list[dict[str, Any]]:
        return [asdict(entry) for entry in self._pending.values()]
