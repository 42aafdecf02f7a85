"""The `ping` op: the daemon answers, and says whether its Redis does (within REDIS_PROBE_S)."""

from __future__ import annotations

from drawstated import __version__
from drawstated.ops.context import OpContext, Reply, Request, loop_time

#: Longest a ping or stats waits on Redis before it reports "down".
REDIS_PROBE_S = 0.25


async def redis_up(ctx: OpContext, deadline: float) -> bool:
    return await ctx.store.ping(min(deadline, loop_time() + REDIS_PROBE_S))


class Ping:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        up = await redis_up(self.ctx, deadline)
        return {"redis": "up" if up else "down", "version": __version__}
