"""The `rollback` op: end an operation and say, once, who refunds it.

close.lua removes the state (and writes its tombstone). When this caller pays, settle.lua then
records in that tombstone that it does (`final`), before anyone is told: two round trips, by
design. The decision may be made only once this daemon holds close.lua's reply, because a
daemon that loses that reply answers `deferred` (the caller does not pay) and the stream must
then pay; made inside close.lua, it could stand while its caller was told `deferred`, and nobody
would refund. A caller that asked the stream to pay (`refund_by: "stream"`) is not to be told
`final: true`, so close.lua records that decision itself: one round trip, and once it has reached
Redis, every resend of the token hears it. A resend with the same token reads the stored
decision instead of making a new one (a decision still open, "p", is settled as the resend
asks); any other caller is never told `final: true`. When Redis does not take the close in
time, the rollback is journaled and answered `deferred`: this caller does not refund, the
outcome stream will say who does.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from drawstate import protocol
from drawstated import errors
from drawstated.deferred import DeferredRollback
from drawstated.ops import fields
from drawstated.ops.context import OpContext, Reply, Request, loop_time
from drawstated.ops.ending import expired_here, publish_now
from drawstated.ops.save import checked_head
from drawstated.ops.states import removed_state
from drawstated.storage.store import CloseOutcome, closed_error

log = logging.getLogger("drawstated.ops.rollback")

#: Kept back from a rollback's deadline to journal it and still answer "deferred" in time:
#: this much, or a quarter of a short deadline.
DEFER_MARGIN_S = 0.05
#: Share of a rollback's usable deadline for removing the state when its caller pays; the rest
#: confirms that it does (settle.lua). A rollback refunded by the stream has nothing to confirm.
CLOSE_SHARE = 0.6


class Rollback:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        ctx = self.ctx
        carried: Mapping[str, Any] | None = None
        if request.get("state") is not None:
            carried = fields.state_map(request)
            checked_head(carried, ctx.limits)  # the rules and the size cap: it may be echoed back
            lock_key, operation_id = carried["lock_key"], carried["operation_id"]
        else:
            lock_key = fields.lock_key(request, ctx.limits)
            operation_id = fields.operation_id(request, ctx.limits, required=True)
            assert operation_id is not None
        reason = fields.reason(request)
        # Without a token a resend counts as another caller: it can never be told "final" twice.
        token = fields.token(request) or secrets.token_hex(8)
        refund_by = fields.refund_by(request)
        caller_pays = refund_by == "caller"
        expect_version = fields.expect_version(request)
        pending = ctx.cleanup.get((lock_key, operation_id))
        if pending is not None:
            if pending.token != token:
                raise closed_error(operation_id, "rollback", "rolled back again")
            return _deferred(carried)
        now = loop_time()
        usable = deadline - _defer_margin(deadline, now)
        try:
            outcome = await ctx.store.close_operation(
                "rollback",
                lock_key,
                operation_id,
                now + (usable - now) * (CLOSE_SHARE if caller_pays else 1.0),
                token=token,
                reason=reason,
                expect_version=expect_version,
                refund_by=refund_by,
            )
        except errors.RequestError as exc:
            expired_here(ctx, lock_key, operation_id, exc)
            if exc.code not in (protocol.REDIS_UNAVAILABLE, protocol.DEADLINE_EXCEEDED):
                raise
            if expect_version is not None:
                raise  # a guarded rollback is never deferred: the guard can only be checked in Redis
            return self._defer(lock_key, operation_id, reason, token, carried)
        state, problem = removed_state(outcome, operation_id, ctx.limits)
        final = await self._settle(
            lock_key, operation_id, token, outcome, problem is None and caller_pays, deadline
        )
        if problem is not None:
            raise problem  # the stream pays (final "0"): the state removed could not be read
        return {"state": state, "cleanup": "done", "final": final, "existed": outcome.existed}

    def _defer(
        self, lock_key: str, operation_id: str, reason: str, token: str, carried: Mapping[str, Any] | None
    ) -> Reply:
        """Redis did not take the rollback in time: journal it, answer "deferred" (the stream refunds)."""
        try:
            self.ctx.cleanup.add(DeferredRollback(lock_key, operation_id, reason, time.time(), token))
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
        if final == "p":  # still open: settle it as this request asks (`caller_pays`)
            try:
                final, published = await self.ctx.store.settle(
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
            await publish_now(self.ctx, lock_key, operation_id, deadline)
        return final == "1"


def _deferred(carried: Mapping[str, Any] | None) -> Reply:
    """The reply to a deferred rollback: this caller does not refund; the outcome stream will say who does."""
    return {
        "state": dict(carried) if carried else None,
        "cleanup": "deferred",
        "final": False,
        "existed": False,
    }


def _defer_margin(deadline: float, now: float) -> float:
    return min(DEFER_MARGIN_S, max(0.0, deadline - now) / 4)
