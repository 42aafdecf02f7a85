"""The ops of the wire protocol: check the request, call the store, shape the reply.

Each handler takes the decoded request and its deadline (event-loop time) and
returns the fields of an ok reply, or raises RequestError. The connection
protocol owns framing, ids and timing; this module owns meaning.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from drawstate import protocol
from drawstate.model import InvalidState
from drawstated import __version__, audit, errors, keys, requests
from drawstated.cleanup import DeferredCleanup, DeferredRollback, HiddenFromRead
from drawstated.codec import decode_state
from drawstated.config import Config
from drawstated.listing import list_pending
from drawstated.saving import Saver, checked_head, closed_by_deferred
from drawstated.stats import Stats
from drawstated.store import CloseOutcome, Store

log = logging.getLogger("drawstated.handlers")

Handler = Callable[[Mapping[str, Any], float], Awaitable[dict[str, Any]]]
#: Longest a ping or stats waits on Redis before it reports "down".
REDIS_PROBE_S = 0.25
#: Kept back from a rollback's deadline to journal it and still answer "deferred" in time:
#: this much, or a quarter of a short deadline.
DEFER_MARGIN_S = 0.05


class Handlers:
    """One instance per daemon; `table` maps op names to handlers."""

    def __init__(self, config: Config, store: Store, cleanup: DeferredCleanup, stats: Stats) -> None:
        self.config = config
        self.limits = config.limits
        self.store = store
        self.cleanup = cleanup
        self.stats = stats
        self.saver = Saver(config, store, cleanup)
        self.table: dict[str, Handler] = {
            "ping": self.ping,
            "save": self.saver.save,
            "load": self.load,
            "rollback": self.rollback,
            "complete": self.complete,
            "pending": self.pending,
            "stats": self.stats_op,
            "audit": self.audit,
        }

    # --- ops -------------------------------------------------------------------------

    async def ping(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        up = await self.store.ping(min(deadline, _now() + REDIS_PROBE_S))
        return {"redis": "up" if up else "down", "version": __version__}

    async def load(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        lock_key = requests.lock_key(request, self.limits)
        operation_id = requests.operation_id(request, self.limits, required=False)
        hidden = self.cleanup.hidden_from_read()
        if operation_id is not None and (lock_key, operation_id) in hidden:
            return {"state": None}
        found = await self.store.load(lock_key, operation_id, deadline)
        if found is not None and (lock_key, found[0]) in hidden:
            if operation_id is not None:
                return {"state": None}
            found = await self._newest_not_hidden(lock_key, hidden, deadline)
        if found is None:
            return {"state": None}
        return {"state": self._decode(found[1], found[0])}

    async def rollback(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        carried: Mapping[str, Any] | None = None
        if request.get("state") is not None:
            carried = requests.state_map(request)
            checked_head(carried, self.limits)  # the rules and the size cap: it may be echoed back
            lock_key, operation_id = carried["lock_key"], carried["operation_id"]
        else:
            lock_key = requests.lock_key(request, self.limits)
            operation_id = requests.operation_id(request, self.limits, required=True)
            assert operation_id is not None
        reason = requests.reason(request)
        if (lock_key, operation_id) in self.cleanup:
            return {"state": dict(carried) if carried else None, "cleanup": "deferred"}
        try:
            outcome = await self.store.close_operation(
                audit.ROLLBACK, lock_key, operation_id, self._ttl_ms, deadline - _defer_margin(deadline)
            )
        except errors.RequestError as exc:
            if exc.code not in (protocol.REDIS_UNAVAILABLE, protocol.DEADLINE_EXCEEDED):
                raise
            # The original engine's rule: the caller refunds now; the delete happens later.
            self.cleanup.add(DeferredRollback(lock_key, operation_id, reason, time.time()))
            log.warning(
                "rollback deferred: redis unavailable",
                extra={"lock_key": lock_key, "operation_id": operation_id},
            )
            return {"state": dict(carried) if carried else None, "cleanup": "deferred"}
        state = await self._closed(audit.ROLLBACK, lock_key, operation_id, outcome, reason, deadline)
        return {"state": state, "cleanup": "done"}

    async def complete(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        lock_key = requests.lock_key(request, self.limits)
        operation_id = requests.operation_id(request, self.limits, required=True)
        assert operation_id is not None
        if (lock_key, operation_id) in self.cleanup:
            raise closed_by_deferred(operation_id)
        outcome = await self.store.close_operation(
            audit.COMPLETE, lock_key, operation_id, self._ttl_ms, deadline
        )
        if outcome.status == "replay":
            return {"existed": outcome.body == b"1"}
        await self._closed(audit.COMPLETE, lock_key, operation_id, outcome, "", deadline)
        return {"existed": outcome.body is not None}

    async def pending(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        return await list_pending(
            self.store, self.limits, self.item, self.cleanup.hidden_from_read(), request, deadline
        )

    async def audit(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        return await audit.read_events(self.store, self.limits, request, deadline)

    async def stats_op(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        up = await self.store.ping(min(deadline, _now() + REDIS_PROBE_S))
        snapshot = self.stats.snapshot()
        snapshot["redis"] = "up" if up else "down"
        snapshot["deferred_rollbacks"] = len(self.cleanup)
        snapshot["version"] = __version__
        return snapshot

    # --- shared steps ------------------------------------------------------------------

    @property
    def _ttl_ms(self) -> int:
        return self.config.ttl_s * 1000

    def _decode(self, raw: bytes, operation_id: str) -> dict[str, Any]:
        try:
            return decode_state(raw, self.limits)
        except InvalidState as exc:
            log.error(
                "corrupted state in redis",
                extra={"operation_id": operation_id, "problem": str(exc)},
            )
            raise errors.corrupted(f"stored state of {operation_id} is corrupted: {exc}") from exc

    async def _newest_not_hidden(
        self, lock_key: str, hidden: HiddenFromRead, deadline: float
    ) -> tuple[str, bytes] | None:
        """The newest live operation of a lock key, skipping ones whose rollback is deferred."""
        items, _ = await self.store.pending_for_lock(lock_key, "", requests.MAX_PENDING_LIMIT, deadline)
        best: tuple[int, str, bytes] | None = None
        for operation_id, raw in items:
            if (lock_key, operation_id) in hidden:
                continue
            updated = self._decode(raw, operation_id)["last_update_time"]
            if best is None or updated > best[0]:
                best = (updated, operation_id, raw)
        return None if best is None else (best[1], best[2])

    async def _closed(
        self,
        kind: str,
        lock_key: str,
        operation_id: str,
        outcome: CloseOutcome,
        reason: str,
        deadline: float,
    ) -> dict[str, Any] | None:
        """Decode what a close removed and audit it (once: a replay was audited before)."""
        state = None
        problem: errors.RequestError | None = None
        if outcome.body is not None:
            try:
                state = self._decode(outcome.body, operation_id)
            except errors.RequestError as exc:
                problem = exc
        if outcome.status == "done":
            event = audit.event(
                kind,
                lock_key,
                operation_id,
                state,
                reason=reason,
                raw=outcome.body if problem else None,
            )
            await self.append_audit(event, deadline)
        if problem is not None:
            raise problem
        return state

    async def append_audit(self, event: Mapping[str, Any], deadline: float) -> None:
        try:
            await self.store.audit(event, deadline)
        except errors.RequestError as exc:
            self.stats.audit_failures += 1
            log.error(
                "audit event lost",
                extra={
                    "event": event.get("event"),
                    "lock_key": event.get("lock_key"),
                    "operation_id": event.get("operation_id"),
                    "error": exc.code,
                },
            )

    async def on_deferred_applied(self, entry: DeferredRollback, outcome: CloseOutcome) -> None:
        """Audit a deferred rollback once Redis has taken it (DeferredCleanup's hook)."""
        state = None
        if outcome.status == "done" and outcome.body is not None:
            try:
                state = decode_state(outcome.body, self.limits)
            except InvalidState:
                state = None
        event = audit.event(
            audit.DEFERRED_CLEANUP,
            entry.lock_key,
            entry.operation_id,
            state,
            reason=entry.reason,
            raw=outcome.body if state is None else None,
        )
        await self.append_audit(event, _now() + 2.0)

    def item(self, key_or_pair: tuple[str, str], raw: bytes) -> dict[str, Any] | None:
        """A pending-list item from a stored state; None (logged) when the state is unreadable."""
        lock_key, operation_id = key_or_pair
        try:
            state = decode_state(raw, self.limits)
        except InvalidState as exc:
            log.error(
                "corrupted state skipped in pending",
                extra={
                    "key": keys.state_key(self.config.prefix, lock_key, operation_id),
                    "problem": str(exc),
                },
            )
            return None
        return {
            "lock_key": lock_key,
            "operation_id": operation_id,
            "completed_count": state["completed_count"],
            "total_count": state["total_count"],
            "version": state.get("version", 0),
            "last_update_time": state["last_update_time"],
            "age_s": max(0, int(time.time()) - state["last_update_time"]),
        }


def _now() -> float:
    return asyncio.get_running_loop().time()


def _defer_margin(deadline: float) -> float:
    return min(DEFER_MARGIN_S, max(0.0, deadline - _now()) / 4)
