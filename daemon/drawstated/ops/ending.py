"""What the ops that end an operation share: writing its outcome event when the script could not.

On Cluster the outcome stream lives on another node than the operation, so the close script leaves
the event in the tombstone's outbox; the op writes it before answering (so a caller that reads the
stream next finds it), or in the background if Redis refuses it, or a sweeper does if this daemon
dies first. The ending itself stands either way.
"""

from __future__ import annotations

import logging

from drawstate import protocol
from drawstated import errors
from drawstated.ops.context import OpContext
from drawstated.storage.stream import publish

log = logging.getLogger("drawstated.ops")


async def publish_now(ctx: OpContext, lock_key: str, operation_id: str, deadline: float) -> None:
    try:
        await publish(ctx.store, ctx.stream, lock_key, operation_id, "owner", deadline)
    except Exception as exc:  # Redis refused the event (a wrong type at the stream, say)
        log.warning(
            "outcome event not written yet; retrying in the background",
            extra={"lock_key": lock_key, "operation_id": operation_id, "error": type(exc).__name__},
        )
        ctx.publisher.schedule(lock_key, operation_id)


def expired_here(ctx: OpContext, lock_key: str, operation_id: str, exc: errors.RequestError) -> None:
    """A request that found the operation expired may have expired it just now: where its script
    could not write the event (Cluster), write it now rather than once the lease is over."""
    if exc.details.get("closed_by") == "expire" and not ctx.store.events_inline:
        ctx.publisher.schedule(lock_key, operation_id)


def closed_by_deferred(operation_id: str) -> errors.RequestError:
    """operation_closed for an operation this daemon holds a deferred rollback of."""
    return errors.RequestError(
        protocol.OPERATION_CLOSED,
        f"operation {operation_id} is being rolled back (deferred cleanup); it cannot be used",
        closed_by="rollback",
    )
