"""The `load` op: one operation's state, or the newest live one of a lock key; nil when there is none.

Nil too for an operation past its lifetime (before any sweep records its expiry) and for one this
daemon holds a deferred rollback of, even when the rollback is applied while the read is in flight.
On one server either form is one Redis round trip; only when the newest stored operation is past
its lifetime or held here does the daemon walk the others, a page of states at a time.
"""

from __future__ import annotations

from typing import Any

from drawstated.deferred import HiddenFromRead
from drawstated.ops import fields
from drawstated.ops.context import OpContext, Reply, Request
from drawstated.ops.states import live_state
from drawstated.storage.store import READ_CHUNK


class Load:
    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx

    async def __call__(self, request: Request, deadline: float) -> Reply:
        limits = self.ctx.limits
        lock_key = fields.lock_key(request, limits)
        operation_id = fields.operation_id(request, limits, required=False)
        hidden = self.ctx.cleanup.hidden_from_read()
        if operation_id is not None and (lock_key, operation_id) in hidden:
            return {"state": None}
        found = await self.ctx.store.load(lock_key, operation_id, deadline)
        if found is None:
            return {"state": None}
        state = live_state(found[1], found[0], limits)
        if state is not None and (lock_key, found[0]) not in hidden:
            return {"state": state}
        if operation_id is not None:
            return {"state": None}
        # The newest is being rolled back here, or has expired: the newest of the others.
        return {"state": await self._newest_live(lock_key, hidden, deadline)}

    async def _newest_live(
        self, lock_key: str, hidden: HiddenFromRead, deadline: float
    ) -> dict[str, Any] | None:
        """The newest live operation of a lock key: not rolled back here, not expired.

        Reads READ_CHUNK states at a time (not all at once), among the first MAX_PENDING_LIMIT.
        """
        best: dict[str, Any] | None = None
        after: str | None = ""
        for _ in range(0, fields.MAX_PENDING_LIMIT, READ_CHUNK):
            if after is None:
                break
            items, after = await self.ctx.store.pending_for_lock(lock_key, after, READ_CHUNK, deadline)
            for operation_id, raw in items:
                if (lock_key, operation_id) in hidden:
                    continue
                state = live_state(raw, operation_id, self.ctx.limits)
                if state is not None and (
                    best is None or state["last_update_time"] > best["last_update_time"]
                ):
                    best = state
        return best
