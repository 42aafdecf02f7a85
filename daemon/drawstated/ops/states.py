"""Reading the states ops get from Redis: decoded and checked, and judged live or past their lifetime."""

from __future__ import annotations

import logging
import time
from typing import Any

from drawstate.limits import Limits
from drawstate.model import InvalidState
from drawstated import errors
from drawstated.codec import decode_stored
from drawstated.storage.store import CloseOutcome, unix_ms

log = logging.getLogger("drawstated.ops")


def corrupted(operation_id: str, exc: InvalidState) -> errors.RequestError:
    log.error("corrupted state in redis", extra={"operation_id": operation_id, "problem": str(exc)})
    return errors.corrupted(f"stored state of {operation_id} is corrupted: {exc}", source="stored")


def live_state(raw: bytes, operation_id: str, limits: Limits) -> dict[str, Any] | None:
    """A stored state, or None once its logical lifetime is over (the sweeper will expire it)."""
    try:
        state, expires = decode_stored(raw, limits)
    except InvalidState as exc:
        raise corrupted(operation_id, exc) from exc
    if expires is not None and expires <= unix_ms():
        return None
    return state


def removed_state(
    outcome: CloseOutcome, operation_id: str, limits: Limits
) -> tuple[dict[str, Any] | None, errors.RequestError | None]:
    """The state a close removed, decoded; or the draw_state_corrupted error saying why it is not."""
    if outcome.body is None:
        return None, None
    try:
        return decode_stored(outcome.body, limits)[0], None
    except InvalidState as exc:
        return None, corrupted(operation_id, exc)


def pending_item(lock_key: str, operation_id: str, raw: bytes, limits: Limits) -> dict[str, Any] | None:
    """A pending-list item from a stored state; None when unreadable (logged) or expired."""
    try:
        state, expires = decode_stored(raw, limits)
    except InvalidState as exc:
        log.error(
            "corrupted state skipped in pending",
            extra={"lock_key": lock_key, "operation_id": operation_id, "problem": str(exc)},
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
