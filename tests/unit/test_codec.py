"""drawstated.codec: the canonical JSON of a state in Redis, its head, its size cap and decoding."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given

from drawstate.limits import Limits
from drawstate.model import DrawState, InvalidState
from drawstated.codec import (
    TOKEN_FIELD,
    StateTooLarge,
    canonical,
    decode_state,
    encode_head,
    encode_state,
)
from tests.unit.strategies import PROPERTY_SETTINGS, valid_states

# What save.lua appends to the head: the next version and the save token, then the brace.
SCRIPT_TAIL = b',"version":3,"_token":"abc"}'

ENGINE_ORDER = [
    "lock_key",
    "operation_id",
    "total_count",
    "completed_count",
    "results",
    "prize_results",
    "errors",
    "start_time",
    "last_update_time",
]
OMIT_EMPTY = {"results", "prize_results", "errors"}


def state(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "lock_key": "player:1001",
        "operation_id": "20240101_120000_deadbeef",
        "total_count": 10,
        "completed_count": 2,
        "results": [4, 8],
        "prize_results": [{"id": "sword", "name": "Sword", "probability": 0.25, "value": 100}],
        "errors": [{"draw_index": 3, "error_message": "rng timeout", "timestamp": 1_700_000_005}],
        "start_time": 1_700_000_000,
        "last_update_time": 1_700_000_010,
        "version": 7,
        "metadata": {"user_id": "1001"},
    }
    data.update(changes)
    return data


@PROPERTY_SETTINGS
@given(valid_states())
def test_head_plus_script_tail_decodes_to_the_canonical_state_with_version(data: dict[str, Any]) -> None:
    head = encode_head(data)
    assert head + b"}" == orjson.dumps(canonical(data))
    # Engine field order, empty lists and metadata left out, version and token appended last.
    expected_order = [name for name in ENGINE_ORDER if name not in OMIT_EMPTY or data[name]]
    if data["metadata"]:
        expected_order.append("metadata")
    assert list(orjson.loads(head + SCRIPT_TAIL)) == [*expected_order, "version", TOKEN_FIELD]

    decoded = decode_state(head + SCRIPT_TAIL)
    assert decoded == {**canonical(data), "version": 3}
    assert TOKEN_FIELD not in decoded
    # The stored form reads back into the same DrawState the caller saved, at the new version.
    saved = DrawState.from_dict(data)
    assert DrawState.from_dict(saved.to_dict()) == saved
    saved.version = 3
    assert DrawState.from_dict(decoded) == saved


def test_head_is_the_canonical_json_without_its_closing_brace() -> None:
    data = state()
    head = encode_head(data)
    assert head + b"}" == orjson.dumps(canonical(data))
    assert head.startswith(b'{"lock_key":"player:1001","operation_id":"20240101_120000_deadbeef",')
    assert head.endswith(b'"metadata":{"user_id":"1001"}')


def test_head_never_carries_version_or_token() -> None:
    head = encode_head(state(version=7, _token="zzz"))
    assert b'"version"' not in head
    assert b"_token" not in head


def test_canonical_omits_empty_lists_and_metadata() -> None:
    data = state(completed_count=0, results=[], prize_results=[], errors=[], metadata={})
    assert list(canonical(data)) == [
        "lock_key",
        "operation_id",
        "total_count",
        "completed_count",
        "start_time",
        "last_update_time",
    ]


def test_canonical_omits_absent_or_none_lists_and_metadata() -> None:
    data = state(completed_count=0, results=None, prize_results=None, metadata=None)
    del data["errors"]
    assert set(canonical(data)) == {
        "lock_key",
        "operation_id",
        "total_count",
        "completed_count",
        "start_time",
        "last_update_time",
    }


def test_canonical_keeps_zero_counts() -> None:
    assert canonical(state(completed_count=0, results=[], prize_results=[]))["completed_count"] == 0


def test_encode_state_is_the_full_document_another_engine_would_write() -> None:
    data = state()
    document = json.loads(encode_state(data))
    assert list(document) == [*ENGINE_ORDER, "metadata", "version"]
    assert document["version"] == 7
    assert decode_state(encode_state(data)) == {**canonical(data), "version": 7}


def test_encode_state_without_version_writes_version_zero() -> None:
    data = state()
    del data["version"]
    assert json.loads(encode_state(data))["version"] == 0


def test_decode_state_accepts_a_str_document() -> None:
    raw = (encode_head(state()) + SCRIPT_TAIL).decode()
    assert decode_state(raw)["version"] == 3


def test_decode_state_reads_a_document_written_in_another_field_order() -> None:
    data = {**canonical(state()), "version": 3}
    shuffled = dict(reversed(list(data.items())))
    assert decode_state(json.dumps(shuffled)) == data


# --- size cap ---------------------------------------------------------------------


def test_state_over_max_state_bytes_raises_state_too_large() -> None:
    data = state(metadata={"note": "x" * 1000})
    size = len(orjson.dumps(canonical(data)))
    with pytest.raises(StateTooLarge, match=f"{size} bytes"):
        encode_head(data, Limits(max_state_bytes=size - 1))


def test_state_exactly_at_max_state_bytes_is_encoded_whole() -> None:
    data = state(metadata={"note": "x" * 1000})
    size = len(orjson.dumps(canonical(data)))
    assert encode_head(data, Limits(max_state_bytes=size)) + b"}" == orjson.dumps(canonical(data))


def test_state_too_large_is_not_invalid_state() -> None:
    # Too large is the caller's invalid request; a corrupt state is something else.
    assert not issubclass(StateTooLarge, InvalidState)


def test_default_cap_rejects_a_large_state() -> None:
    many = [{"draw_index": 1, "error_message": "e" * 1024, "timestamp": 1} for _ in range(600)]
    data = state(total_count=10_000, errors=many)
    with pytest.raises(StateTooLarge):
        encode_head(data)


# --- corrupted values ---------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"lock_key":"a",', id="head-without-tail"),
        pytest.param(b"\xff\xfe{}", id="not-utf8"),
        pytest.param(b"{'lock_key': 'a'}", id="python-repr"),
        pytest.param(b'{"total_count": NaN}', id="nan-literal"),
    ],
)
def test_decode_state_of_broken_json_raises_invalid_state(raw: bytes) -> None:
    with pytest.raises(InvalidState) as info:
        decode_state(raw)
    assert info.value.path == "state"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[]", id="array"),
        pytest.param(b'"state"', id="string"),
        pytest.param(b"3", id="number"),
        pytest.param(b"null", id="null"),
    ],
)
def test_decode_state_of_a_non_object_raises_invalid_state(raw: bytes) -> None:
    with pytest.raises(InvalidState, match="not a JSON object") as info:
        decode_state(raw)
    assert info.value.path == "state"


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        pytest.param({"completed_count": 11}, "completed_count", id="completed-over-total"),
        pytest.param({"results": [1, 2, 3]}, "results", id="more-results-than-completed"),
        pytest.param({"lock_key": "a{b}"}, "lock_key", id="brace-in-lock-key"),
        pytest.param({"last_update_time": 1}, "last_update_time", id="update-before-start"),
        pytest.param({"total_count": True}, "total_count", id="bool-total"),
        pytest.param({"rarity": "SSR"}, "state", id="unknown-field"),
    ],
)
def test_decode_state_of_rule_breaking_json_raises_invalid_state(changes: dict[str, Any], path: str) -> None:
    raw = json.dumps(state(**changes))
    with pytest.raises(InvalidState) as info:
        decode_state(raw)
    assert info.value.path == path


def test_decode_state_of_out_of_range_probability_raises_invalid_state() -> None:
    prize = {"id": "sword", "name": "", "probability": 1.5, "value": 1}
    with pytest.raises(InvalidState) as info:
        decode_state(json.dumps(state(prize_results=[prize])))
    assert info.value.path == "prize_results[0].probability"


def test_decode_state_applies_the_given_limits() -> None:
    raw = json.dumps(state())
    with pytest.raises(InvalidState) as info:
        decode_state(raw, Limits(max_total=5))
    assert info.value.path == "total_count"
