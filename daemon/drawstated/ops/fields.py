"""Reading request fields: each helper returns a checked value or raises invalid_request.

Bad input is answered with a message that names the field; it never reaches Redis.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from drawstate.limits import INT64_MAX, MAX_REASON_CHARS, MAX_TOKEN_CHARS, Limits
from drawstate.model import InvalidState, check_lock_key, check_operation_id
from drawstate.protocol import DURABILITIES, REFUND_BY, Durability, RefundBy
from drawstated import errors
from drawstated.ops.accepted import APPEND_FIELDS

TOKEN_RE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOKEN_CHARS}}}")
MAX_PENDING_LIMIT = 1000
#: Longest cursor of `pending` and `audit` (every cursor the daemon gives out is shorter).
MAX_CURSOR_CHARS = 64
DEFAULT_PENDING_LIMIT = 100


def optional_int(request: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = request.get(name)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise errors.invalid(f"{name} must be an integer in [{low}, {high}]")
    return value


def optional_str(request: Mapping[str, Any], name: str, max_chars: int) -> str | None:
    value = request.get(name)
    if value is None:
        return None
    if type(value) is not str or len(value) > max_chars:
        raise errors.invalid(f"{name} must be a string of at most {max_chars} characters")
    return value


def lock_key(request: Mapping[str, Any], limits: Limits) -> str:
    try:
        return check_lock_key(request.get("lock_key"), limits)
    except InvalidState as exc:
        raise errors.invalid(str(exc)) from exc


def operation_id(request: Mapping[str, Any], limits: Limits, *, required: bool) -> str | None:
    value = request.get("operation_id")
    if value is None and not required:
        return None
    try:
        return check_operation_id(value, limits)
    except InvalidState as exc:
        raise errors.invalid(str(exc)) from exc


def token(request: Mapping[str, Any]) -> str | None:
    value = request.get("token")
    if value is None:
        return None
    if type(value) is not str or not TOKEN_RE.fullmatch(value):
        raise errors.invalid(f"token must be 1-{MAX_TOKEN_CHARS} of A-Z a-z 0-9 _ -")
    return value


def refund_by(request: Mapping[str, Any]) -> RefundBy:
    """Who a rollback asks to pay its refund: "caller" (the default) or "stream" (a refund worker)."""
    value = request.get("refund_by")
    if value is None:
        return "caller"
    for choice in REFUND_BY:
        if value == choice:
            return choice
    raise errors.invalid(f"refund_by must be one of {', '.join(REFUND_BY)}")


def reason(request: Mapping[str, Any]) -> str:
    return optional_str(request, "reason", MAX_REASON_CHARS) or ""


def durability(request: Mapping[str, Any], default: Durability) -> Durability:
    value = request.get("durability")
    if value is None:
        value = default
    for choice in DURABILITIES:
        if value == choice:
            return choice
    raise errors.invalid(f"durability must be one of {', '.join(DURABILITIES)}")


def expect_version(request: Mapping[str, Any]) -> int | None:
    return optional_int(request, "expect_version", 0, INT64_MAX)


def pending_limit(request: Mapping[str, Any]) -> int:
    limit = optional_int(request, "limit", 1, MAX_PENDING_LIMIT)
    return DEFAULT_PENDING_LIMIT if limit is None else limit


def state_map(request: Mapping[str, Any]) -> Mapping[str, Any]:
    state = request.get("state")
    if not isinstance(state, Mapping):
        raise errors.invalid("state must be a map")
    return state


def flag(request: Mapping[str, Any], name: str) -> bool:
    """An optional boolean field (absent or nil is false)."""
    value = request.get(name)
    if value is None:
        return False
    if type(value) is not bool:
        raise errors.invalid(f"{name} must be true or false")
    return value


#: The `base` of a save reply: a state's `_digest`, 64 lowercase hex characters.
BASE_RE = re.compile(r"[0-9a-f]{64}")


def append_map(request: Mapping[str, Any], limits: Limits) -> Mapping[str, Any]:
    """A save's `append`: the operation (checked), its `base`, and only known fields (their values
    are the state's: the DrawState rules judge them)."""
    append = request.get("append")
    if not isinstance(append, Mapping):
        raise errors.invalid("append must be a map")
    unknown = [name for name in append if name not in APPEND_FIELDS]
    if unknown:
        raise errors.invalid(f"append has an unknown field {str(unknown[0])[:64]!r}")
    lock_key(append, limits)
    operation_id(append, limits, required=True)
    base = append.get("base")
    if type(base) is not str or not BASE_RE.fullmatch(base):
        raise errors.invalid("append.base must be the base of a save reply (64 hex characters)")
    return append
