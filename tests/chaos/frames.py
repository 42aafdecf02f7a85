"""Hypothesis strategies for hostile frames: what a buggy game process might send.

Three families:
- request maps: a plausible request for a random op, then mutated — fields
  replaced by values of the wrong type (huge and negative ints, NaN and
  infinities, binary, ext types, deep and oversized values), deleted, or joined
  by unknown keys; the same inside its DrawState, prizes and errors. Lock keys
  carry braces and control characters, operation ids look like paths.
- non-map frames: any msgpack value at the top.
- hand-built bodies: nesting deeper than any packer allows, float32 NaN,
  invalid UTF-8, ext values, lengths that promise more than the body holds.

Each example is a `Frame`: its body and the id the daemon must answer it with
(None: `id: nil`), when the body is one the test packed itself.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import msgpack
from hypothesis import strategies as st

from drawstate import protocol
from drawstate.limits import INT64_MAX, INT64_MIN, MAX_FRAME_BYTES
from tests.unit.strategies import valid_states

UINT64_MAX = 2**64 - 1
INT_EDGES = (0, 1, -1, 2**31 - 1, 2**31, 2**32, 2**53 - 1, 2**53 + 1, INT64_MAX, INT64_MAX + 1, UINT64_MAX,
             INT64_MIN, -(2**53))  # fmt: skip
FLOAT_EDGES = (math.nan, math.inf, -math.inf, -0.0, 0.5, 1.0, 1e308, 5e-324)
NASTY_TEXT = (
    "", " ", "{", "}", "{}", "a{b", "b}a", "{player:1}", "player:1}", "\x00", "\x7f", "a\nb", "\r\n",
    "\t", "\u2028", "\u200b", "\ufeff", "\U0010ffff", "\x1b[31m", "é", "../../etc/passwd",
    "/etc/passwd", "..", "a/b", "a\\b", "C:\\Windows", "%s%n%x", "*", "?", "[a-z]", "lottery:state:{x}:y",
    "' OR 1=1 --", "ping", "save", "ack", "replicated", "0", "-1", "NaN", "null", "op-1",
)  # fmt: skip
#: Lengths around every text cap (64, 200, 256, 512, 1024) and past the frame cap.
BIG_SIZES = (65, 201, 257, 513, 1025, 4097, 65_537, 600_000, MAX_FRAME_BYTES + 1)
#: The daemon's canary (see test_fuzz) lives under LOCK_KEYS[0] with an id the fuzzer never uses.
LOCK_KEYS = ("fuzz:1", "fuzz:2", "fuzz: é ✓", "k" * 200)
OPERATION_IDS = ("20260101_000000_0000f422", "op-1", "x" * 64)

ints = st.integers(INT64_MIN, UINT64_MAX) | st.sampled_from(INT_EDGES)
floats = st.floats() | st.sampled_from(FLOAT_EDGES)
texts = (
    st.text(max_size=24)
    | st.sampled_from(NASTY_TEXT)
    | st.builds(str.__mul__, st.sampled_from("k{\x00é/"), st.sampled_from(BIG_SIZES))
)
exts = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)) | st.builds(
    msgpack.Timestamp, st.integers(0, 2**34 - 1), st.integers(0, 999_999_999)
)
map_keys = st.none() | st.booleans() | ints | floats | texts | st.binary(max_size=8)
scalars = map_keys | exts
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(map_keys, inner, max_size=4),
    max_leaves=10,
)
big_lists = st.builds(
    lambda item, n: [item] * n,
    st.sampled_from([0, -1, "x", None, {"id": "a"}, [1]]),
    st.sampled_from([10_001, 100_000, 250_000]),
)
wrong = junk | big_lists

lock_keys = st.sampled_from(LOCK_KEYS)
operation_ids = st.sampled_from(OPERATION_IDS)


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def states(draw: st.DrawFn) -> dict[str, Any]:
    """A valid state under one of a few lock keys and ids, so fuzzed saves meet each other."""
    state = draw(valid_states())
    state["lock_key"], state["operation_id"] = draw(lock_keys), draw(operation_ids)
    return state


OP_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "ping": {},
    "stats": {},
    "save": {
        "state": states(),
        "token": _opt(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)),
        "expect_version": _opt(st.integers(0, 4)),
        "ttl_s": _opt(st.integers(1, 120)),
        "durability": _opt(st.sampled_from(["ack", "replicated"])),
    },
    "load": {"lock_key": lock_keys, "operation_id": _opt(operation_ids)},
    "rollback": {
        "state": _opt(states()),
        "lock_key": lock_keys,
        "operation_id": operation_ids,
        "reason": _opt(st.text(max_size=40)),
        "token": _opt(st.sampled_from(["t1", "t2", "", "bad token", "x" * 65])),
    },
    "complete": {"lock_key": lock_keys, "operation_id": operation_ids},
    "pending": {
        "lock_key": _opt(lock_keys),
        "older_than_s": _opt(st.integers(0, 10**6)),
        "limit": _opt(st.integers(1, 1000)),
        "cursor": _opt(st.sampled_from(["", "0:0", "op-1", "99999999999999999999:0"])),
    },
    "audit": {
        "lock_key": _opt(lock_keys),
        "since": _opt(st.integers(0, 2 * 10**9)),
        "limit": _opt(st.integers(1, 1000)),
        "cursor": _opt(st.sampled_from(["0-0", "1-1", "18446744073709551615-0", "99999999999999999999-0"])),
    },
    "outcomes": {
        "group": st.sampled_from(["refunds", "g:1", "", "a b", "x" * 65]),
        "consumer": st.sampled_from(["w1", "w-2", "", "é"]),
        "limit": _opt(st.integers(1, 1000)),
        "block_ms": _opt(st.integers(0, 50)),
        "claim_idle_ms": _opt(st.integers(1, 10**6)),
    },
    "ack": {
        "group": st.sampled_from(["refunds", "", "a b"]),
        "ids": st.lists(st.sampled_from(["0-0", "1-1", "18446744073709551615-0", "x", ""]), max_size=3),
    },
}


def _mutate(draw: st.DrawFn, target: dict[Any, Any]) -> None:
    how = draw(st.sampled_from(("replace", "replace", "delete", "add")))
    if how == "add" or not target:
        target[draw(map_keys)] = draw(wrong)
        return
    key = draw(st.sampled_from(sorted(target, key=repr)))
    if how == "delete":
        del target[key]
    else:
        target[key] = draw(wrong)


def _nested_maps(state: dict[Any, Any]) -> list[dict[Any, Any]]:
    """The state and the maps inside it (prizes, errors, metadata): places a mutation can land."""
    found = [state]
    for name in ("prize_results", "errors"):
        items = state.get(name)
        if isinstance(items, list):
            found += [item for item in items if isinstance(item, dict)]
    if isinstance(state.get("metadata"), dict):
        found.append(state["metadata"])
    return found


@st.composite
def request_maps(draw: st.DrawFn) -> dict[Any, Any]:
    """A plausible request for a random op, with 0-3 mutations of its envelope and 0-3 of its state."""
    op = draw(st.sampled_from(protocol.OPS))
    frame: dict[Any, Any] = {"id": draw(st.integers(0, 10_000)), "op": op}
    if draw(st.booleans()):
        frame["deadline_ms"] = draw(st.integers(1, 3000))
    for name, strategy in OP_FIELDS[op].items():
        value = draw(strategy)
        if value is not None:
            frame[name] = value
    for _ in range(draw(st.integers(0, 3))):
        _mutate(draw, frame)
    if isinstance(frame.get("state"), dict):
        for _ in range(draw(st.integers(0, 3))):
            _mutate(draw, draw(st.sampled_from(_nested_maps(frame["state"]))))
    return frame


@dataclass(frozen=True)
class Frame:
    body: bytes
    #: The id every reply to this frame must carry (None: `id: nil`); only when `id_known`.
    expected_id: int | None
    id_known: bool = True

    @property
    def wire(self) -> bytes:
        return struct.pack(">I", len(self.body)) + self.body

    @property
    def oversized(self) -> bool:
        return len(self.body) > MAX_FRAME_BYTES

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep megabyte bodies short
        body = self.body if len(self.body) <= 300 else self.body[:300] + b"..."
        return f"Frame({len(self.body)} bytes, expected_id={self.expected_id}, body={body!r})"


def expected_id(message: Any) -> int | None:
    request_id = message.get("id") if isinstance(message, dict) else None
    return request_id if type(request_id) is int and 0 <= request_id <= INT64_MAX else None


def _packed(message: Any, single_float: bool) -> Frame:
    try:
        body = msgpack.packb(message, use_bin_type=True, use_single_float=single_float)
    except OverflowError:  # a double too large for float32
        body = msgpack.packb(message, use_bin_type=True)
    return Frame(body, expected_id(message))


#: Envelopes to hang a hand-built value on, by the field that receives it.
SLOTS = {
    "top": b"",
    "id": b"\x82\xa2op\xa4ping\xa2id",
    "op": b"\x82\xa2id\x01\xa2op",
    "deadline_ms": b"\x83\xa2id\x01\xa2op\xa4ping\xabdeadline_ms",
    "state": b"\x83\xa2id\x01\xa2op\xa4save\xa5state",
    "lock_key": b"\x83\xa2id\x01\xa2op\xa4load\xa8lock_key",
}
RAW_VALUES = (
    b"\xca\x7f\xc0\x00\x00",  # float32 NaN
    b"\xca\x7f\x80\x00\x00",  # float32 +inf
    b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",  # float64 NaN
    b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff",  # uint64 max
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",  # int64 min
    b"\xc4\x03abc",  # bin
    b"\xd4\x01\x00",  # fixext1
    b"\xd6\xff\x00\x00\x00\x01",  # timestamp32
    b"\xa3\xff\xfe\xfd",  # str with invalid UTF-8
    b"\xa3\xed\xa0\x80",  # str holding an encoded lone surrogate
    b"\xc1",  # the one byte msgpack never uses
    b"\xdd\xff\xff\xff\xff",  # array32 promising 4 billion items
    b"\xdf\x00\x10\x00\x00",  # map32 promising a million entries
    b"\xdb\x00\x0f\xff\xff",  # str32 promising a megabyte
    b"\xa5ab",  # str cut short
    b"",  # nothing at all
)


@st.composite
def hand_built(draw: st.DrawFn) -> Frame:
    prefix = SLOTS[draw(st.sampled_from(sorted(SLOTS)))]
    if draw(st.booleans()):
        depth = draw(st.integers(1, 3000) | st.sampled_from([998, 999, 1000, 1023, 1024, 1025]))
        value = draw(st.sampled_from([b"\x91", b"\x81\xa1k"])) * depth + b"\xc0"
    else:
        value = draw(st.sampled_from(RAW_VALUES))
    trailing = draw(st.sampled_from([b"", b"", b"\xc0", b"\x00\x00"]))
    return Frame(prefix + value + trailing, None, id_known=False)


@st.composite
def packed(draw: st.DrawFn, messages: st.SearchStrategy[Any]) -> Frame:
    """A packed message (floats as float32 or float64). Composite, so a failing example is shown as
    the Frame's short repr rather than the megabytes of its arguments."""
    return _packed(draw(messages), draw(st.booleans()))


class Blob(bytes):
    """Raw bytes with a short repr (hypothesis prints failing examples; some are megabytes)."""

    def __repr__(self) -> str:
        shown = bytes(self[:120])
        return f"Blob({len(self)} bytes: {shown!r}{'...' if len(self) > 120 else ''})"


frames = st.one_of(packed(request_maps()), packed(request_maps()), packed(junk), hand_built())
