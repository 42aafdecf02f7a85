"""The JSON form of a DrawState in Redis (orjson), in the original engine's layout.

A state is stored as canonical JSON; the save script appends `version`, the
save token (`_token`) and the logical expiry (`_expires`, Redis milliseconds)
itself, since only it knows the next version and Redis's clock. So the daemon
encodes a *head*: the JSON object without those and without its closing brace.
Canonical means one text per value: fields in the engine's order, empty lists
and metadata left out, metadata keys sorted, so the save script can compare an
operation's fixed fields and recorded draws as text. Reading strips the
internal fields and checks every DrawState rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from drawstate.limits import DEFAULT_LIMITS, Limits
from drawstate.model import FIELD_ORDER, InvalidState, check_state

TOKEN_FIELD = "_token"  # noqa: S105  # a JSON field name, not a secret
EXPIRES_FIELD = "_expires"
#: Written by the daemon in this order; the save script appends version and token itself.
_ORDER = tuple(name for name in FIELD_ORDER if name not in ("version", "metadata"))
_OMIT_EMPTY = frozenset({"results", "prize_results", "errors"})


class StateTooLarge(ValueError):
    """The state encodes past max_state_bytes: the request is invalid, the state is not corrupt."""


def canonical(state: Mapping[str, Any]) -> dict[str, Any]:
    """Fields in the engine's order; empty lists and metadata omitted; no version."""
    data: dict[str, Any] = {}
    for name in _ORDER:
        value = state.get(name)
        if name in _OMIT_EMPTY and not value:
            continue
        data[name] = value
    metadata = state.get("metadata")
    if metadata:
        data["metadata"] = dict(sorted(metadata.items()))
    return data


def encode_head(state: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The canonical JSON of a valid state minus its closing brace; StateTooLarge past the cap."""
    encoded = orjson.dumps(canonical(state))
    if len(encoded) > limits.max_state_bytes:
        raise StateTooLarge(f"state encodes to {len(encoded)} bytes, over the {limits.max_state_bytes} cap")
    return encoded[:-1]


def encode_state(state: Mapping[str, Any]) -> bytes:
    """The full JSON document of a state (with its version), as another engine would write it."""
    data = canonical(state)
    data["version"] = state.get("version", 0)
    return orjson.dumps(data)


def decode_state(raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse and check a stored state; InvalidState (→ draw_state_corrupted) if it breaks a rule."""
    return decode_stored(raw, limits)[0]


def decode_stored(raw: bytes | str, limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], int | None]:
    """A stored state and its logical expiry (unix ms; None for a state another writer stored)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidState("state", f"stored value is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidState("state", "stored value is not a JSON object")
    data.pop(TOKEN_FIELD, None)
    expires = data.pop(EXPIRES_FIELD, None)
    check_state(data, limits)
    return data, expires if type(expires) is int else None
