"""The Go lottery engine's stored states, converted into the sidecar's DrawState or refused with a reason.

The engine keeps `<prefix>:state:<lockKey>:<operationId>` (no hash-tag braces;
the lock key may hold colons, the operation id is the last segment) holding its
`DrawState` JSON: no `operation_id`, `version` or `metadata`, strings escaped
as Go's encoding/json does, `1.0` written as `1`, nil lists as `null`. This
module is pure (no Redis): `convert` takes one key and its value and returns
the state the sidecar would store (the operation id taken from the key), a
`Refusal` naming the field and the problem, or `NotEngineState` for the
sidecar's own states, which share the default prefix. It never changes data to
make a state fit: a state the rules refuse is reported, for the operator to
decide (docs/migration.md). The one normalisation is representation only: a
`null` or empty list is left out, as the sidecar stores it (protocol §8).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import orjson

from drawstate.limits import DEFAULT_LIMITS, Limits
from drawstate.model import FIELD_ORDER, InvalidState, check_lock_key, check_operation_id, check_state
from drawstated.codec import StateTooLarge, encode_head
from drawstated.keys import parse_state_key

#: The engine's default key prefix (the sidecar's default too: their keys differ by the braces).
ENGINE_PREFIX = "lottery"
#: The fields of the engine's DrawState, in its order; anything else in a document is refused.
ENGINE_FIELDS = (
    "lock_key",
    "total_count",
    "completed_count",
    "results",
    "prize_results",
    "errors",
    "start_time",
    "last_update_time",
)
_ENGINE_FIELD_SET = frozenset(ENGINE_FIELDS)
_LISTS = frozenset({"results", "prize_results", "errors"})
#: The engine's scalar fields: it always writes them, and reads one left out as 0 or "".
_REQUIRED = ("total_count", "completed_count", "start_time", "last_update_time")
#: Longest text of a key or field value quoted back in a refusal.
QUOTE_CHARS = 80


class EngineKey(NamedTuple):
    """The operation an engine key names."""

    lock_key: str
    operation_id: str


@dataclass(frozen=True, slots=True)
class Converted:
    """An engine state the sidecar can take: `state` is its DrawState dict (no version, no metadata)."""

    key: str
    lock_key: str
    operation_id: str
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An engine state that cannot be imported as it is: `field` names what is wrong, `problem` says how."""

    key: str
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


@dataclass(frozen=True, slots=True)
class NotEngineState:
    """A key under the prefix that is not the engine's: the sidecar's own state, left alone."""

    key: str
    why: str


Outcome: TypeAlias = Converted | Refusal | NotEngineState


class KeyRefused(ValueError):
    """An engine key that names no importable operation; `field` and `problem` as in Refusal."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _quote(text: str) -> str:
    return repr(text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS] + "...")


def state_key_head(prefix: str = ENGINE_PREFIX) -> str:
    """What every engine state key starts with (also the start of the sidecar's: `{` follows there)."""
    return f"{prefix}:state:"


def parse_engine_key(key: str, prefix: str = ENGINE_PREFIX, limits: Limits = DEFAULT_LIMITS) -> EngineKey:
    """The lock key and operation id of `<prefix>:state:<lockKey>:<operationId>`.

    The operation id is the last colon-separated segment, since a lock key may
    hold colons. Raises KeyRefused when the key is not under the prefix, has no
    operation id segment, or either part breaks the sidecar's rules.
    """
    head = state_key_head(prefix)
    if not key.startswith(head):
        raise KeyRefused("key", f"{_quote(key)} is not under {head!r}")
    lock_key, colon, operation_id = key[len(head) :].rpartition(":")
    if not colon or not lock_key:
        raise KeyRefused("key", f"{_quote(key)} has no '<lock key>:<operation id>' after {head!r}")
    try:
        check_operation_id(operation_id, limits)
    except InvalidState as exc:
        raise KeyRefused(
            "operation_id", f"{_quote(operation_id)} (the key's last segment) {exc.problem}"
        ) from None
    try:
        check_lock_key(lock_key, limits)
    except InvalidState as exc:
        raise KeyRefused("lock_key", f"{_quote(lock_key)} (from the key) {exc.problem}") from None
    return EngineKey(lock_key, operation_id)


def _is_sidecar_state(key: str, prefix: str, document: Any) -> bool:
    """The sidecar's own layout: a braced key, and a document with the operation_id the engine never has."""
    try:
        parse_state_key(prefix, key)
    except ValueError:
        return False
    return isinstance(document, Mapping) and "operation_id" in document


def _parse(raw: bytes | str) -> Any:
    """The document as the daemon will read it once imported (orjson, as codec.decode_state does)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise KeyRefused("document", f"not JSON: {exc}") from None


def _state_from(document: Mapping[str, Any], engine_key: EngineKey) -> dict[str, Any]:
    """The sidecar's DrawState dict of an engine document; KeyRefused for what the engine never writes."""
    unknown = sorted(set(document) - _ENGINE_FIELD_SET - {"operation_id"})
    if unknown:
        also = f" (nor are {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise KeyRefused(unknown[0], f"not a field of the engine's DrawState{also}")
    if "lock_key" not in document:
        raise KeyRefused("lock_key", "missing from the document")
    if document["lock_key"] != engine_key.lock_key:
        raise KeyRefused(
            "lock_key",
            f"the document says {_quote(str(document['lock_key']))}, the key {_quote(engine_key.lock_key)}",
        )
    if "operation_id" in document and document["operation_id"] != engine_key.operation_id:
        raise KeyRefused(
            "operation_id",
            f"the document says {_quote(str(document['operation_id']))}, "
            f"the key {_quote(engine_key.operation_id)}",
        )
    for name in _REQUIRED:
        if name not in document:
            raise KeyRefused(name, "missing from the document (the engine would read it as 0)")
    state: dict[str, Any] = {}
    for name in FIELD_ORDER:
        if name == "operation_id":
            state[name] = engine_key.operation_id
        elif name in document and not (name in _LISTS and document[name] in (None, [])):
            state[name] = document[name]
    return state


def convert(
    key: str, raw: bytes | str, prefix: str = ENGINE_PREFIX, limits: Limits = DEFAULT_LIMITS
) -> Outcome:
    """What to do with one key under `<prefix>:state:` and its value: import it, refuse it, or leave it."""
    if not key.startswith(state_key_head(prefix)):
        return NotEngineState(key, f"not under {state_key_head(prefix)!r}")
    try:
        document = _parse(raw)
        if _is_sidecar_state(key, prefix, document):
            return NotEngineState(key, "the sidecar's own state (braced key, operation_id in the document)")
        if not isinstance(document, dict):
            raise KeyRefused("document", f"not a JSON object but {type(document).__name__}")
        engine_key = parse_engine_key(key, prefix, limits)
        state = _state_from(document, engine_key)
    except KeyRefused as exc:
        return Refusal(key, exc.field, exc.problem)
    try:
        check_state(state, limits)
    except InvalidState as exc:
        return Refusal(key, exc.path, exc.problem)
    try:
        encode_head(state, limits)  # the cap a save checks: a state the sidecar could never save again
    except StateTooLarge as exc:
        return Refusal(key, "state", str(exc))
    return Converted(key, engine_key.lock_key, engine_key.operation_id, state)
