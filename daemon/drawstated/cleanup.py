"""Deferred rollbacks: a rollback Redis could not apply in time is answered ok and finished here.

The original engine's rule: a rollback always succeeds for the caller, who
refunds at once. So the delete must happen later, whatever comes: each pending
delete is written to a journal in the data dir before the reply goes out,
retried in the background until Redis takes it, and replayed when the daemon
starts. Until then the daemon refuses to load or save that operation, so a
refunded operation can never be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from drawstated.errors import RequestError
from drawstated.store import CloseOutcome, Store

log = logging.getLogger("drawstated.cleanup")

JOURNAL_NAME = "deferred-rollbacks.jsonl"
#: Deadline of one background attempt to apply a deferred rollback.
ATTEMPT_DEADLINE_S = 2.0


@dataclass(frozen=True, slots=True)
class DeferredRollback:
    lock_key: str
    operation_id: str
    reason: str
    deferred_at: float


AuditHook = Callable[[DeferredRollback, CloseOutcome], Awaitable[None]]
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
        self, journal_path: Path, store: Store, ttl_ms: int, retry_s: float, on_applied: AuditHook
    ) -> None:
        self.journal_path = journal_path
        self._store = store
        self._ttl_ms = ttl_ms
        self._retry_s = retry_s
        self._on_applied = on_applied
        self._pending: dict[Key, DeferredRollback] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

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
        """Record a rollback to apply later; durable (fsync) before it returns."""
        self._pending[entry.lock_key, entry.operation_id] = entry
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.journal_path, "ab") as journal:
            journal.write(orjson.dumps(asdict(entry)) + b"\n")
            journal.flush()
            os.fsync(journal.fileno())
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
        loop = asyncio.get_running_loop()
        try:
            outcome = await self._store.close_operation(
                "rollback",
                entry.lock_key,
                entry.operation_id,
                self._ttl_ms,
                loop.time() + ATTEMPT_DEADLINE_S,
            )
        except RequestError as exc:
            if not exc.details.get("closed_by"):
                log.info(
                    "deferred rollback still pending",
                    extra={
                        "lock_key": entry.lock_key,
                        "operation_id": entry.operation_id,
                        "error": exc.code,
                    },
                )
                return
            # Completed by someone else meanwhile: nothing left to delete.
            log.warning(
                "deferred rollback found the operation already closed",
                extra={
                    "lock_key": entry.lock_key,
                    "operation_id": entry.operation_id,
                    "closed_by": exc.details["closed_by"],
                },
            )
            outcome = CloseOutcome("replay", None)
        self._pending.pop((entry.lock_key, entry.operation_id), None)
        self._rewrite_journal()
        log.info(
            "deferred rollback applied",
            extra={
                "lock_key": entry.lock_key,
                "operation_id": entry.operation_id,
                "deferred_s": round(time.time() - entry.deferred_at, 3),
            },
        )
        try:
            await self._on_applied(entry, outcome)
        except Exception:
            log.exception("audit of a deferred rollback failed")

    def _rewrite_journal(self) -> None:
        """Replace the journal with what is still pending (write, fsync, rename)."""
        tmp = self.journal_path.with_suffix(".tmp")
        with open(tmp, "wb") as journal:
            for entry in self._pending.values():
                journal.write(orjson.dumps(asdict(entry)) + b"\n")
            journal.flush()
            os.fsync(journal.fileno())
        os.replace(tmp, self.journal_path)

    def snapshot(self) -> list[dict[str, Any]]:
        return [asdict(entry) for entry in self._pending.values()]
