"""The JSON form of a DrawState in Redis (orjson), in the original engine's layout.

A state is stored as canonical JSON; the save script appends the state's digest
(`_digest`, computed here), `version`, the save token (`_token`) and the logical
expiry (`_expires`, Redis milliseconds) itself, since only it knows the next
version and Redis's clock. So the daemon encodes a *head*: the JSON object
without those and without its closing brace. Canonical means one text per
value: fields in the engine's order, empty lists and metadata left out, metadata
keys sorted, so the save script can compare an operation's fixed fields and
recorded draws as text. Reading strips the internal fields and checks every
DrawState rule.

The digest stands for what a later save must keep: the operation's identity
(total_count, start_time, metadata) and, for each draw list, the length and
SHA-256 of its text between the brackets. A save that extends a stored state
can send the digest of its own identity and of its lists' first bytes (as many
as the stored lists hold, ending between two elements): equal to the stored
digest, it shows the stored draws are where they were without the script
reading them (save.lua).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from drawstate.limits import DEFAULT_LIMITS, Limits
from drawstate.model import FIELD_ORDER, InvalidState, check_state

TOKEN_FIELD = "_token"  # noqa: S105  # a JSON field name, not a secret
EXPIRES_FIELD = "_expires"
DIGEST_FIELD = "_digest"
#: The lists of recorded draws, which a save may only append to, in their order in the document.
DRAW_LISTS = ("results", "prize_results", "errors")
_RESULTS_KEY, _PRIZES_KEY, _ERRORS_KEY = (f',"{name}":['.encode() for name in DRAW_LISTS)
#: What the digest hashes: the identity's SHA-256, then each draw list's text length and SHA-256.
_DIGEST_RECORD = struct.Struct(">32s" + "Q32s" * len(DRAW_LISTS))
#: What follows the last draw list: its closing bracket, then the field after the lists.
_AFTER_LISTS = b'],"start_time":'
_CLOSE_BRACKET = ord("]")
_LIST_KEYS = (_RESULTS_KEY, _PRIZES_KEY, _ERRORS_KEY)
_COMPLETED_KEY = b',"completed_count":'
_START_KEY = b',"start_time":'
_LAST_UPDATE_KEY = b',"last_update_time":'
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
    check_size(len(encoded), limits)
    return encoded[:-1]


def check_size(encoded_bytes: int, limits: Limits) -> None:
    """StateTooLarge when a state's canonical JSON is over the size cap."""
    if encoded_bytes > limits.max_state_bytes:
        raise StateTooLarge(f"state encodes to {encoded_bytes} bytes, over the {limits.max_state_bytes} cap")


def draw_lists(head: bytes, state: Mapping[str, Any]) -> tuple[memoryview, memoryview, memoryview]:
    """The text between the brackets of each draw list in `state`'s head (empty when left out).

    `head` is encode_head(state). A key such as `,"errors":[` is found only where it is a key:
    inside a JSON string every quote is escaped, so its unescaped `,"` cannot occur there. The
    searches skip the long lists: the results and prizes keys are found from the front (results
    hold no quote to stop at), the errors key and the end of the lists from the back.
    """
    view = memoryview(head)
    empty = view[0:0]
    get = state.get
    results, prizes, errors = bool(get("results")), bool(get("prize_results")), bool(get("errors"))
    if not (results or prizes or errors):
        return empty, empty, empty
    end = head.rfind(_AFTER_LISTS)
    results_at = head.find(_RESULTS_KEY) if results else 0
    prizes_at = head.find(_PRIZES_KEY, results_at) if prizes else results_at
    errors_at = head.rfind(_ERRORS_KEY, prizes_at, end) if errors else end + 1
    # A list ends at the bracket before the next present list's key, or at the end of the lists.
    prizes_end = errors_at - 1
    results_end = prizes_at - 1 if prizes else prizes_end
    return (
        view[results_at + len(_RESULTS_KEY) : results_end] if results else empty,
        view[prizes_at + len(_PRIZES_KEY) : prizes_end] if prizes else empty,
        view[errors_at + len(_ERRORS_KEY) : end] if errors else empty,
    )


def extend_head(
    head: bytes, lengths: Sequence[int], completed_count: int, last_update_time: int, added: Sequence[bytes]
) -> tuple[bytes, list[memoryview]]:
    """The head of `head`'s state with draws appended and its two counters set, without decoding it.

    `head` is encode_head of a valid state whose draw lists' texts are `lengths` long (draw_lists);
    `added` holds, per draw list, the new elements' JSON text without brackets (b"" for none).
    Canonical JSON is one text per value and an element's text does not depend on its neighbours,
    so the result is byte for byte encode_head of the extended state (tests/unit/test_appended.py
    holds it to that). Returns the head and each draw list's new text (views into it); ValueError
    if `head` is not laid out as `lengths` say.
    """
    count_at = head.index(_COMPLETED_KEY) + len(_COMPLETED_KEY)
    at = head.index(b",", count_at)  # an int's digits end at the next field's comma
    parts: list[bytes | memoryview] = [head[:count_at], b"%d" % completed_count]
    view = memoryview(head)
    spans = []
    size = len(parts[0]) + len(parts[1])
    for key, known, new in zip(_LIST_KEYS, lengths, added, strict=True):
        pieces: tuple[bytes | memoryview, ...] = ()
        if known:
            if not head.startswith(key, at) or head[at + len(key) + known] != _CLOSE_BRACKET:
                raise ValueError("head does not hold the draw lists it was described with")
            start = at + len(key)
            pieces = (view[start : start + known], b",", new) if new else (view[start : start + known],)
            at = start + known + 1
        elif new:
            pieces = (new,)
        if pieces:
            length = sum(len(piece) for piece in pieces)
            spans.append((size + len(key), length))
            parts += (key, *pieces, b"]")
            size += len(key) + length + 1
        else:
            spans.append((size, 0))
    if not head.startswith(_START_KEY, at):
        raise ValueError("head does not hold the draw lists it was described with")
    last_at = head.index(_LAST_UPDATE_KEY, at) + len(_LAST_UPDATE_KEY)
    end = head.find(b",", last_at)  # metadata, if any, follows the last update's digits
    end = len(head) if end < 0 else end
    parts += (view[at:last_at], b"%d" % last_update_time, view[end:])
    extended = b"".join(parts)
    whole = memoryview(extended)
    return extended, [whole[start : start + length] for start, length in spans]


def identity_text(state: Mapping[str, Any]) -> bytes:
    """What the first save fixes, as one JSON text: total_count, start_time, metadata (keys sorted)."""
    fixed = (state.get("total_count"), state.get("start_time"), state.get("metadata") or None)
    return orjson.dumps(fixed, option=orjson.OPT_SORT_KEYS)


def state_digest(identity: bytes, lengths: Sequence[int], hashes: Sequence[bytes]) -> str:
    """The `_digest` (hex SHA-256) of identity_text's SHA-256 and each draw list's text length and SHA-256."""
    (results, prizes, errors), (results_hash, prizes_hash, errors_hash) = lengths, hashes
    record = _DIGEST_RECORD.pack(identity, results, results_hash, prizes, prizes_hash, errors, errors_hash)
    return hashlib.sha256(record).hexdigest()


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
    data.pop(DIGEST_FIELD, None)
    expires = data.pop(EXPIRES_FIELD, None)
    check_state(data, limits)
    return data, expires if type(expires) is int else None
