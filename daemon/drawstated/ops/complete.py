"""The `complete` op: end a finished operation; its outcome event is `complete`."""

from __future__ import annotations

from drawstated import errors
from drawstated.ops import fields
from drawstated.ops.context import OpContext, Reply, Request
from drawstated.ops.ending import closed_by_deferred, expired_here, publish_now
from drawstated.ops.states import removed_state


class Complete:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        ctx = self.ctx
        lock_key = fields.lock_key(request, ctx.limits)
        operation_id = fields.operation_id(request, ctx.limits, required=True)
        assert operation_id is not None
        if (lock_key, operation_id) in ctx.cleanup:
            raise closed_by_deferred(operation_id)
        try:
            outcome = await ctx.store.close_operation("complete", lock_key, operation_id, deadline)
        except errors.RequestError as exc:
            expired_here(ctx, lock_key, operation_id, exc)
            raise
        if not outcome.published:
            await publish_now(ctx, lock_key, operation_id, deadline)
        if outcome.status == "done":
            _, problem = removed_state(outcome, operation_id, ctx.limits)
            if problem is not None:
                raise problem  # completed all the same; the event keeps the raw state
        return {"existed": outcome.existed}
