"""The `stats` op: the daemon's counters, its Redis, its deferred rollbacks and the outcome stream."""

from __future__ import annotations

from drawstate import hot_path
from drawstated import __version__
from drawstated.ops.context import OpContext, Reply, Request
from drawstated.ops.ping import redis_up


class StatsOp:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        ctx = self.ctx
        up = await redis_up(ctx, deadline)
        snapshot = ctx.stats.snapshot()
        snapshot["redis"] = "up" if up else "down"
        snapshot["deferred_rollbacks"] = len(ctx.cleanup)
        snapshot["deferred_applied"] = ctx.cleanup.applied
        snapshot["deferred_superseded"] = ctx.cleanup.superseded
        snapshot["events_to_publish"] = len(ctx.publisher)
        snapshot["version"] = __version__
        snapshot["hot_path"] = hot_path()
        return snapshot
