"""Audit events: what a rollback, complete or deferred cleanup removed, and why; and reading them.

Events go to the capped stream `{prefix}:audit` (see Store.audit), right after
the close script and only when it removed something this time, so a retried
rollback is audited once. The `audit` op reads them back, oldest first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from drawstate.limits import INT64_MAX, Limits
from drawstated import errors, requests
from drawstated.store import Store

ROLLBACK = "rollback"
COMPLETE = "complete"
DEFERRED_CLEANUP = "deferred-cleanup"
#: Cap on the raw text of an unreadable state kept in an event (for a manual refund).
RAW_STATE_CHARS = 16_384
#: Stream entries read per round trip by the `audit` op.
READ_BATCH = 200
_STREAM_ID_RE = re.compile(r"\d{1,20}-\d{1,20}")
#: Each half of a stream id is an unsigned 64-bit number.
STREAM_ID_PART_MAX = 2**64 - 1


def event(
    kind: str,
    lock_key: str,
    operation_id: str,
    state: Mapping[str, Any] | None,
    *,
    reason: str = "",
    raw: bytes | None = None,
) -> dict[str, Any]:
    """A flat field map for XADD: counts and the draws granted, as JSON where nested."""
    fields: dict[str, Any] = {
        "event": kind,
        "lock_key": lock_key,
        "operation_id": operation_id,
        "time": int(time.time()),
        "reason": reason,
        "existed": int(state is not None or raw is not None),
    }
    if state is not None:
        fields["completed_count"] = state.get("completed_count", 0)
        fields["total_count"] = state.get("total_count", 0)
        fields["errors"] = len(state.get("errors") or ())
        fields["results"] = orjson.dumps(state.get("results") or [])
        fields["prize_results"] = orjson.dumps(state.get("prize_results") or [])
        fields["metadata"] = orjson.dumps(state.get("metadata") or {})
    elif raw is not None:
        fields["corrupted_state"] = raw[:RAW_STATE_CHARS]
    return fields


def decode_entry(entry_id: bytes, fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """An event as read back from the stream, nested fields decoded."""
    out: dict[str, Any] = {"id": entry_id.decode()}
    for name, value in fields.items():
        key = name.decode()
        if key in ("results", "prize_results", "metadata"):
            out[key] = orjson.loads(value)
        elif key in ("time", "completed_count", "total_count", "errors", "existed"):
            out[key] = int(value)
        else:
            out[key] = value.decode(errors="replace")
    return out


async def read_events(
    store: Store, limits: Limits, request: Mapping[str, Any], deadline: float
) -> dict[str, Any]:
    """The `audit` op: events oldest first, from `since` (unix s) or after `cursor`, filtered by lock key."""
    limit = requests.pending_limit(request)
    since = requests.optional_int(request, "since", 0, INT64_MAX // 1000)
    cursor = requests.optional_str(request, "cursor", 64)
    lock_key = requests.lock_key(request, limits) if request.get("lock_key") is not None else None
    if cursor is not None and not (
        _STREAM_ID_RE.fullmatch(cursor) and all(int(part) <= STREAM_ID_PART_MAX for part in cursor.split("-"))
    ):
        raise errors.invalid("cursor is not one this daemon returned")
    start = f"({cursor}" if cursor else f"{(since or 0) * 1000}-0"
    items: list[dict[str, Any]] = []
    while True:
        entries = await store.read_audit(start, READ_BATCH, deadline)
        for entry_id, fields in entries:
            event = decode_entry(entry_id, fields)
            if lock_key is None or event.get("lock_key") == lock_key:
                items.append(event)
                if len(items) == limit:
                    return {"items": items, "cursor": event["id"]}
        if len(entries) < READ_BATCH:
            return {"items": items, "cursor": None}
        start = f"({entries[-1][0].decode()}"
