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
import time
from collections.abc import Container
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from drawstated import journal
from drawstated.errors import RequestError
from drawstated.storage.store import Store
from drawstated.storage.stream import OutcomeStream, Publisher, superseded_event

log = logging.getLogger("drawstated.deferred")

#: The name is from when records were bare JSON lines; journals of that format still read.
JOURNAL_NAME = "deferred-rollbacks.jsonl"
JOURNAL_MODE = journal.JOURNAL_MODE
#: Deadline of one background attempt to apply a deferred rollback.
ATTEMPT_DEADLINE_S = 2.0
#: After the background task fails (a journal it cannot rewrite, say), it waits twice as long
#: each time, from cleanup_retry_s up to this, before it tries again.
FAILURE_BACKOFF_MAX_S = 30.0


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
        #: The journal still lists rollbacks already applied: rewrite it when the disk allows.
        self._dirty = False
        #: (kept, dropped) records found by replay_journal.
        self.replayed = (0, 0)

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
        """Read what a previous run left undone; returns how many rollbacks are pending.

        A torn tail (a crash or a full disk mid-append) or a damaged line is dropped with a
        warning; every whole record is kept. The journal is then rewritten clean, in the current
        format; if that fails too (a full disk), the next append starts on a fresh line anyway.
        """
        found = journal.read(self.journal_path)
        known = {item.name for item in fields(DeferredRollback)}
        dropped = found.dropped
        for record in found.records:
            try:
                entry = DeferredRollback(**{k: v for k, v in record.items() if k in known})
            except TypeError:  # a record missing a field: not one this daemon can apply
                dropped += 1
                continue
            self._pending[entry.lock_key, entry.operation_id] = entry
        self.replayed = (len(self._pending), dropped)
        if dropped:
            log.warning(
                "journal of deferred rollbacks had damaged records; kept every whole one",
                extra={"kept": found.kept, "dropped": dropped, "torn_tail": found.torn_tail},
            )
        if self._pending:
            log.warning("replaying deferred rollbacks from journal", extra={"count": len(self._pending)})
        if dropped or found.legacy:
            self._dirty = True
            self._try_rewrite("at start-up")
        return len(self._pending)

    def add(self, entry: DeferredRollback) -> None:
        """Record a rollback to apply later: durable (fsync) first, then hidden from reads.

        OSError (a full disk, say) leaves nothing hidden and nothing half-written in the journal:
        the caller answers a retryable error, and a resend tries again.
        """
        journal.append(self.journal_path, asdict(entry))
        self._pending[entry.lock_key, entry.operation_id] = entry
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="deferred-cleanup")

    async def stop(self) -> None:
        """Stop retrying; whatever is still pending stays in the journal for the next start.

        Never raises: a journal that cannot be rewritten now (a full disk) still holds every
        pending rollback, plus some already applied, which a later start finds ended and drops.
        """
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._dirty:
            self._try_rewrite("at shutdown")

    async def _run(self) -> None:
        """Apply pending rollbacks until none is left; survive anything, backing off after a failure."""
        failures = 0
        while True:
            try:
                if not self._pending and not self._dirty:
                    self._wake.clear()
                    await self._wake.wait()
                for entry in list(self._pending.values()):
                    await self._apply(entry)
                if self._dirty:
                    self._rewrite_journal()
            except Exception as exc:
                failures += 1
                backoff = min(self._retry_s * 2**failures, FAILURE_BACKOFF_MAX_S)
                level = logging.WARNING if failures == 1 else logging.DEBUG  # one line per streak
                log.log(level, "deferred cleanup failed; retrying",
                        extra={"error": f"{type(exc).__name__}: {exc}", "retry_in_s": backoff,
                               "failures": failures})  # fmt: skip
                await asyncio.sleep(backoff)
                continue
            if failures:
                log.warning("deferred cleanup working again", extra={"failures": failures})
                failures = 0
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
            if outcome.status == "nothing":
                # Never stored, or ended so long ago its tombstone is gone (its event was written
                # then): writing an ending now could pay twice. Its caller, told "deferred", resends.
                log.warning("deferred rollback found nothing to end; nothing written", extra=where)
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
        self._dirty = True  # rewritten after this round, or retried with backoff if the disk is full

    def _rewrite_journal(self) -> None:
        """Replace the journal with what is still pending (temp file, fsync, rename, fsync of the dir)."""
        self._dirty = True
        journal.rewrite(self.journal_path, (asdict(entry) for entry in self._pending.values()))
        self._dirty = False

    def _try_rewrite(self, when: str) -> None:
        try:
            self._rewrite_journal()
        except OSError as exc:
            log.error(
                "journal of deferred rollbacks not rewritten " + when,
                extra={"error": str(exc), "pending": len(self._pending)},
            )

    def snapshot(self) -> list[dict[str, Any]]:
        return [asdict(entry) for entry in self._pending.values()]
