"""The ops as requests and replies: each op's request map made, and its reply read, in one place.

The blocking Client and the asyncio AsyncClient send the same maps and read the same replies;
only how they move frames differs. Tokens are made here, once per logical call, so every
resend of that call (a reconnect, a retry) carries the same one.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from drawstate.errors import DrawStateCorrupted, OutcomeUnknown
from drawstate.limits import Limits
from drawstate.model import DrawState, InvalidState
from drawstate.results import (
    AuditPage,
    Durability,
    OutcomeEvent,
    PendingItem,
    PendingPage,
    Ping,
    RefundBy,
    RollbackResult,
    SaveResult,
    Stats,
)

Request = dict[str, Any]
#: The longest timeout a call may take: past this, the clocks and socket calls under it overflow.
MAX_TIMEOUT_S = 86_400.0


def checked_timeout(timeout: float, what: str = "timeout") -> float:
    """A timeout a caller gave, in seconds: finite, positive and at most a day; else ValueError."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout):
        raise ValueError(f"{what} must be a finite number of seconds, got {timeout!r}")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"{what} must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds, got {timeout!r}")
    return float(timeout)


Reply = dict[str, Any]


def new_token() -> str:
    """A token for one logical save or rollback (16 hex chars: the wire allows 1-64 of [A-Za-z0-9_-])."""
    return secrets.token_hex(8)


def _fields(request: Request, **optional: Any) -> Request:
    """`request` with every optional field that is not None."""
    request.update({name: value for name, value in optional.items() if value is not None})
    return request


def state_map(state: DrawState | Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of a state to send: a fresh dict (the caller's object is never touched), no version."""
    data = state.to_dict() if isinstance(state, DrawState) else dict(state)
    data.pop("version", None)
    return data


def read_state(data: Any, limits: Limits) -> DrawState | None:
    """A state the daemon returned, or None; DrawStateCorrupted if it breaks a rule."""
    if data is None:
        return None
    try:
        return DrawState.from_dict(data, limits)
    except (InvalidState, TypeError) as exc:
        raise DrawStateCorrupted(f"daemon returned an invalid state: {exc}") from exc


def ping() -> Request:
    return {"op": "ping"}


def read_ping(reply: Reply) -> Ping:
    return Ping(redis=reply["redis"], version=reply["version"])


def save(
    state: DrawState | Mapping[str, Any],
    *,
    expect_version: int | None,
    ttl_s: int | None,
    token: str | None,
    durability: Durability | None,
    want_base: bool = False,
) -> Request:
    return _fields(
        {"op": "save", "state": state_map(state), "token": token or new_token()},
        expect_version=expect_version,
        ttl_s=ttl_s,
        durability=durability,
        want_base=want_base or None,
    )


def save_append(
    append: dict[str, Any],
    *,
    expect_version: int | None,
    ttl_s: int | None,
    token: str | None,
    durability: Durability | None,
) -> Request:
    """A save sending only the draws a state adds to the one whose base it names (appends.py)."""
    return _fields(
        {"op": "save", "append": append, "token": token or new_token(), "want_base": True},
        expect_version=expect_version,
        ttl_s=ttl_s,
        durability=durability,
    )


def read_save(reply: Reply) -> SaveResult:
    return SaveResult(reply["version"], reply["ttl_s"], reply.get("replicas"))


def load(lock_key: str, operation_id: str | None) -> Request:
    return _fields({"op": "load", "lock_key": lock_key}, operation_id=operation_id)


def rollback(
    target: str | DrawState | Mapping[str, Any],
    operation_id: str | None,
    *,
    reason: str | None,
    token: str | None,
    refund_by: RefundBy | None = None,
    expect_version: int | None = None,
) -> Request:
    """By lock key and operation id, or by the state the caller holds (its ids name the operation)."""
    request: Request = {"op": "rollback", "token": token or new_token()}
    if isinstance(target, str):
        if operation_id is None:
            raise TypeError("rollback(lock_key, operation_id): the operation id is required")
        request.update(lock_key=target, operation_id=operation_id)
    else:
        request["state"] = state_map(target)
    return _fields(request, reason=reason, refund_by=refund_by, expect_version=expect_version)


def read_rollback(reply: Reply, request: Request, limits: Limits) -> RollbackResult:
    return RollbackResult(
        read_state(reply.get("state"), limits),
        reply["cleanup"],
        final=bool(reply.get("final", False)),
        existed=bool(reply.get("existed", False)),
        token=request["token"],
    )


def judge_rollback_resent(result: RollbackResult, sends: int) -> RollbackResult:
    """A rollback the client sent more than once may not answer "deferred": OutcomeUnknown then.

    The earlier attempt may have reached Redis and been decided "this caller pays" with its answer
    lost; the deferred resend would then tell this caller not to pay, and the stream would not pay
    either (the decision stands). Only a "done" answer to a resend with the same token decides.
    """
    if sends > 1 and result.cleanup == "deferred":
        raise OutcomeUnknown(
            "rollback deferred (Redis unreachable) after an earlier attempt of it went out and may have "
            "been applied: who refunds is not known yet; resend the rollback with the same token "
            f"({result.token}) until it answers done"
        )
    return result


def complete(lock_key: str, operation_id: str) -> Request:
    return {"op": "complete", "lock_key": lock_key, "operation_id": operation_id}


def read_complete(reply: Reply) -> bool:
    return bool(reply["existed"])


def pending(lock_key: str | None, older_than_s: int | None, limit: int | None, cursor: str | None) -> Request:
    return _fields(
        {"op": "pending"}, lock_key=lock_key, older_than_s=older_than_s, limit=limit, cursor=cursor
    )


def read_pending(reply: Reply) -> PendingPage:
    return PendingPage([PendingItem(**item) for item in reply["items"]], reply.get("cursor"))


def stats() -> Request:
    return {"op": "stats"}


def read_stats(reply: Reply) -> Stats:
    return Stats.from_wire(reply)


def audit(
    lock_key: str | None, since: int | None, limit: int | None, cursor: str | None, newest: bool = False
) -> Request:
    request = _fields({"op": "audit"}, lock_key=lock_key, since=since, limit=limit, cursor=cursor)
    if newest:
        request["newest"] = True
    return request


def read_audit(reply: Reply) -> AuditPage:
    return AuditPage([OutcomeEvent.from_wire(item) for item in reply["items"]], reply.get("cursor"))


def outcomes(
    group: str, consumer: str, limit: int | None, block_ms: int | None, claim_idle_ms: int | None
) -> Request:
    return _fields(
        {"op": "outcomes", "group": group, "consumer": consumer},
        limit=limit,
        block_ms=block_ms,
        claim_idle_ms=claim_idle_ms,
    )


def read_outcomes(reply: Reply) -> list[OutcomeEvent]:
    return [OutcomeEvent.from_wire(item) for item in reply["items"]]


def ack(group: str, ids: Sequence[str]) -> Request:
    return {"op": "ack", "group": group, "ids": list(ids)}


def read_ack(reply: Reply) -> int:
    return int(reply["acked"])


def outcomes_timeout(call_timeout: float, block_ms: int) -> float:
    """The call timeout of an `outcomes` read that may wait `block_ms`: the wait plus the usual budget."""
    return block_ms / 1000 + call_timeout
