"""The ops of the wire protocol that act on one operation: load, rollback, complete; and ping, stats, pending.

Each handler takes the decoded request and its deadline (event-loop time) and
returns the fields of an ok reply, or raises RequestError. The connection
protocol owns framing, ids and timing; this module owns meaning. Save, the hot
path, lives in saving.py; the ops that read the outcome stream in consumers.py.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from drawstate import protocol
from drawstate.model import InvalidState
from drawstated import __version__, consumers, errors, keys, requests
from drawstated.cleanup import DeferredCleanup, DeferredRollback, HiddenFromRead
from drawstated.codec import decode_stored
from drawstated.config import Config
from drawstated.listing import list_pending
from drawstated.outcomes import OutcomeStream, Publisher, publish
from drawstated.saving import Saver, checked_head, closed_by_deferred
from drawstated.stats import Stats
from drawstated.store import READ_CHUNK, CloseOutcome, Store, closed_error, unix_ms

log = logging.getLogger("drawstated.handlers")

Handler = Callable[[Mapping[str, Any], float], Awaitable[dict[str, Any]]]
#: Longest a ping or stats waits on Redis before it reports "down".
REDIS_PROBE_S = 0.25
#: Kept back from a rollback's deadline to journal it and still answer "deferred" in time:
#: this much, or a quarter of a short deadline.
DEFER_MARGIN_S = 0.05
#: Share of a rollback's usable deadline for removing the state; the rest confirms who refunds.
CLOSE_SHARE = 0.6


class Handlers:
    """One instance per daemon; `table` maps op names to handlers."""

    def __init__(
        self,
        config: Config,
        store: Store,
        stream: OutcomeStream,
        publisher: Publisher,
        cleanup: DeferredCleanup,
        stats: Stats,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.store = store
        self.stream = stream
        self.publisher = publisher
        self.cleanup = cleanup
        self.stats = stats
        self.saver = Saver(config, store, cleanup, publisher)
        self.table: dict[str, Handler] = {
            "ping": self.ping,
            "save": self.saver.save,
            "load": self.load,
            "rollback": self.rollback,
            "complete": self.complete,
            "pending": self.pending,
            "stats": self.stats_op,
            "audit": self.audit,
            "outcomes": self.outcomes,
            "ack": self.ack,
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
        if found is None:
            return {"state": None}
        state = self._live_state(found[1], found[0])
        if state is not None and (lock_key, found[0]) not in hidden:
            return {"state": state}
        if operation_id is not None:
            return {"state": None}
        # The newest is being rolled back here, or has expired: the newest of the others.
        return {"state": await self._newest_live(lock_key, hidden, deadline)}

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
        # Without a token a resend counts as another caller: it can never be told "final" twice.
        token = requests.token(request) or secrets.token_hex(8)
        caller_pays = requests.refund_by(request) == "caller"
        pending = self.cleanup.get((lock_key, operation_id))
        if pending is not None:
            if pending.token != token:
                raise closed_error(operation_id, "rollback", "rolled back again")
            return _deferred(carried)
        loop_now = _now()
        usable = deadline - _defer_margin(deadline)
        try:
            outcome = await self.store.close_operation(
                "rollback",
                lock_key,
                operation_id,
                loop_now + (usable - loop_now) * CLOSE_SHARE,
                token=token,
                reason=reason,
            )
        except errors.RequestError as exc:
            self._expired_here(lock_key, operation_id, exc)
            if exc.code not in (protocol.REDIS_UNAVAILABLE, protocol.DEADLINE_EXCEEDED):
                raise
            return self._defer(lock_key, operation_id, reason, token, carried)
        state, problem = self._removed(outcome, operation_id)
        final = await self._settle(
            lock_key, operation_id, token, outcome, problem is None and caller_pays, deadline
        )
        if problem is not None:
            raise problem  # the stream pays (final "0"): the state removed could not be read
        return {"state": state, "cleanup": "done", "final": final, "existed": outcome.existed}

    async def complete(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        lock_key = requests.lock_key(request, self.limits)
        operation_id = requests.operation_id(request, self.limits, required=True)
        assert operation_id is not None
        if (lock_key, operation_id) in self.cleanup:
            raise closed_by_deferred(operation_id)
        try:
            outcome = await self.store.close_operation("complete", lock_key, operation_id, deadline)
        except errors.RequestError as exc:
            self._expired_here(lock_key, operation_id, exc)
            raise
        if not outcome.published:
            await self._publish(lock_key, operation_id, deadline)
        if outcome.status == "done":
            _, problem = self._removed(outcome, operation_id)
            if problem is not None:
                raise problem  # completed all the same; the event keeps the raw state
        return {"existed": outcome.existed}

    async def pending(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        return await list_pending(
            self.store,
            self.limits,
            self.config.max_frame_bytes,
            self.item,
            self.cleanup.hidden_from_read(),
            request,
            deadline,
        )

    async def audit(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        return await consumers.read_history(
            self.stream, self.limits, self.config.max_frame_bytes, request, deadline
        )

    async def outcomes(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        return await consumers.read_outcomes(
            self.stream, self.limits, self.config.max_frame_bytes, request, deadline
        )

    async def ack(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        return await consumers.acknowledge(self.stream, request, deadline)

    async def stats_op(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        up = await self.store.ping(min(deadline, _now() + REDIS_PROBE_S))
        snapshot = self.stats.snapshot()
        snapshot["redis"] = "up" if up else "down"
        snapshot["deferred_rollbacks"] = len(self.cleanup)
        snapshot["deferred_applied"] = self.cleanup.applied
        snapshot["deferred_superseded"] = self.cleanup.superseded
        snapshot["events_to_publish"] = len(self.publisher)
        snapshot["version"] = __version__
        return snapshot

    # --- shared steps ------------------------------------------------------------------

    def _defer(
        self, lock_key: str, operation_id: str, reason: str, token: str, carried: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """Redis did not take the rollback in time: journal it, answer "deferred" (the stream refunds)."""
        try:
            self.cleanup.add(DeferredRollback(lock_key, operation_id, reason, time.time(), token))
        except OSError as exc:
            log.error(
                "deferred rollback not journaled", extra={"operation_id": operation_id, "error": str(exc)}
            )
            raise errors.unavailable(
                "redis is unreachable and the rollback could not be journaled; resend it with the same token"
            ) from exc
        log.warning(
            "rollback deferred: redis unavailable", extra={"lock_key": lock_key, "operation_id": operation_id}
        )
        return _deferred(carried)

    async def _settle(
        self,
        lock_key: str,
        operation_id: str,
        token: str,
        outcome: CloseOutcome,
        caller_pays: bool,
        deadline: float,
    ) -> bool:
        """Make the refund decision durable before anyone is told it: True when this caller pays.

        The caller pays unless it asked the stream to (`refund_by: "stream"`), or the state removed
        could not be read (the caller cannot compute a refund from it)."""
        final, published = outcome.final, outcome.published
        if final == "p":
            try:
                final, published = await self.store.settle(
                    lock_key, operation_id, token, "1" if caller_pays else "0", deadline
                )
            except errors.RequestError as exc:
                if not exc.retryable:
                    raise
                raise errors.RequestError(
                    protocol.OUTCOME_UNKNOWN,
                    f"operation {operation_id} is rolled back, but whether this caller pays the refund "
                    "could not be confirmed in time; resend the rollback with the same token to learn it",
                ) from exc
        if not published:
            await self._publish(lock_key, operation_id, deadline)
        return final == "1"

    def _expired_here(self, lock_key: str, operation_id: str, exc: errors.RequestError) -> None:
        """A close that found the operation expired may have expired it just now: where its script
        could not write the event (Cluster), write it now rather than once the lease is over."""
        if exc.details.get("closed_by") == "expire" and not self.store.events_inline:
            self.publisher.schedule(lock_key, operation_id)

    async def _publish(self, lock_key: str, operation_id: str, deadline: float) -> None:
        """Write the event the close script could not (Cluster) before answering, so a caller that
        reads the stream next finds it; if that fails, it is written in the background instead,
        and by a sweeper if this daemon dies first. The close itself stands either way."""
        try:
            await publish(self.store, self.stream, lock_key, operation_id, "owner", deadline)
        except Exception as exc:  # Redis refused the event (a wrong type at the stream, say)
            log.warning(
                "outcome event not written yet; retrying in the background",
                extra={"lock_key": lock_key, "operation_id": operation_id, "error": type(exc).__name__},
            )
            self.publisher.schedule(lock_key, operation_id)

    def _removed(
        self, outcome: CloseOutcome, operation_id: str
    ) -> tuple[dict[str, Any] | None, errors.RequestError | None]:
        """The state a close removed, decoded; or the draw_state_corrupted error saying why it is not."""
        if outcome.body is None:
            return None, None
        try:
            return decode_stored(outcome.body, self.limits)[0], None
        except InvalidState as exc:
            log.error("corrupted state in redis", extra={"operation_id": operation_id, "problem": str(exc)})
            return None, errors.corrupted(
                f"stored state of {operation_id} is corrupted: {exc}", source="stored"
            )

    def _live_state(self, raw: bytes, operation_id: str) -> dict[str, Any] | None:
        """A stored state, or None once its logical lifetime is over (the sweeper will expire it)."""
        try:
            state, expires = decode_stored(raw, self.limits)
        except InvalidState as exc:
            log.error("corrupted state in redis", extra={"operation_id": operation_id, "problem": str(exc)})
            raise errors.corrupted(
                f"stored state of {operation_id} is corrupted: {exc}", source="stored"
            ) from exc
        if expires is not None and expires <= unix_ms():
            return None
        return state

    async def _newest_live(
        self, lock_key: str, hidden: HiddenFromRead, deadline: float
    ) -> dict[str, Any] | None:
        """The newest live operation of a lock key: not rolled back here, not expired.

        Read READ_CHUNK states at a time (not all at once), among the first MAX_PENDING_LIMIT.
        """
        best: dict[str, Any] | None = None
        after: str | None = ""
        for _ in range(0, requests.MAX_PENDING_LIMIT, READ_CHUNK):
            if after is None:
                break
            items, after = await self.store.pending_for_lock(lock_key, after, READ_CHUNK, deadline)
            for operation_id, raw in items:
                if (lock_key, operation_id) in hidden:
                    continue
                state = self._live_state(raw, operation_id)
                if state is not None and (
                    best is None or state["last_update_time"] > best["last_update_time"]
                ):
                    best = state
        return best

    def item(self, key_or_pair: tuple[str, str], raw: bytes) -> dict[str, Any] | None:
        """A pending-list item from a stored state; None when unreadable (logged) or expired."""
        lock_key, operation_id = key_or_pair
        try:
            state, expires = decode_stored(raw, self.limits)
        except InvalidState as exc:
            log.error(
                "corrupted state skipped in pending",
                extra={
                    "key": keys.state_key(self.config.prefix, lock_key, operation_id),
                    "problem": str(exc),
                },
            )
            return None
        if expires is not None and expires <= unix_ms():
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


def _deferred(carried: Mapping[str, Any] | None) -> dict[str, Any]:
    """The reply to a deferred rollback: this caller does not refund; the outcome stream will say who does."""
    return {
        "state": dict(carried) if carried else None,
        "cleanup": "deferred",
        "final": False,
        "existed": False,
    }


def _now() -> float:
    return asyncio.get_running_loop().time()


def _defer_margin(deadline: float) -> float:
    return min(DEFER_MARGIN_S, max(0.0, deadline - _now()) / 4)
