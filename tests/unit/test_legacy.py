"""The Go engine's states: keys parsed, documents converted unchanged or refused with the field and why.

The fixtures are the engine's own bytes (tests/fixtures/go_engine, written by
Go's encoding/json); the properties feed documents written the way Go writes
them and documents with any field broken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drawstate.limits import DRAW_INT_MAX, DRAW_INT_MIN, INT64_MAX, MAX_TOTAL
from drawstate.model import check_state
from drawstated.codec import decode_state, encode_state
from drawstated.legacy.convert import (
    ENGINE_FIELDS,
    Converted,
    KeyRefused,
    NotEngineState,
    Refusal,
    convert,
    parse_engine_key,
)
from tests.unit.strategies import PROPERTY_SETTINGS, lock_keys, operation_ids

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "go_engine"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
ENTRIES = MANIFEST["fixtures"]


def _raw(entry: dict[str, Any]) -> bytes:
    return (FIXTURES / entry["file"]).read_bytes()


def _go_json(document: dict[str, Any]) -> bytes:
    """JSON the way Go's encoding/json writes it: <, >, &, U+2028, U+2029 escaped; 1.0 as 1."""

    def integral(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, list):
            return [integral(item) for item in value]
        if isinstance(value, dict):
            return {key: integral(item) for key, item in value.items()}
        return value

    text = json.dumps(integral(document), ensure_ascii=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _expected(document: dict[str, Any], operation_id: str) -> dict[str, Any]:
    """The sidecar's state for an engine document: the id added, null and empty lists left out."""
    state = {"lock_key": document["lock_key"], "operation_id": operation_id}
    for name in ENGINE_FIELDS[1:]:
        if name in document and document[name] not in (None, []):
            state[name] = document[name]
    return state


# --- the committed fixtures -----------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES, ids=[entry["name"] for entry in ENTRIES])
def test_each_engine_fixture_gets_the_outcome_its_manifest_names(entry):
    outcome = convert(entry["key"], _raw(entry), MANIFEST["prefix"])
    expected_type = {"importable": Converted, "refused": Refusal, "not_engine": NotEngineState}[
        entry["expect"]
    ]
    assert isinstance(outcome, expected_type), outcome
    if isinstance(outcome, Refusal):
        assert outcome.field == entry["field"], str(outcome)
        assert outcome.problem
        assert outcome.key == entry["key"]


@pytest.mark.parametrize(
    "entry", [e for e in ENTRIES if e["expect"] == "importable"], ids=lambda entry: entry["name"]
)
def test_importable_fixture_converts_to_its_document_with_the_keys_operation_id(entry):
    outcome = convert(entry["key"], _raw(entry))
    assert isinstance(outcome, Converted)
    document = json.loads(_raw(entry))
    assert outcome.key == entry["key"]
    assert outcome.operation_id == entry["key"].rsplit(":", 1)[1]
    assert outcome.lock_key == document["lock_key"]
    # Compared as JSON text, so an int probability that became a float (or back) would show.
    assert json.dumps(outcome.state) == json.dumps(_expected(document, outcome.operation_id))
    assert "version" not in outcome.state
    assert "metadata" not in outcome.state
    check_state(outcome.state)


def test_issue_sample_converts_to_the_sidecars_state():
    outcome = convert("lottery:state:user_123_daily:op_20231221_0001", _raw({"file": "issue_sample.json"}))
    assert outcome == Converted(
        key="lottery:state:user_123_daily:op_20231221_0001",
        lock_key="user_123_daily",
        operation_id="op_20231221_0001",
        state={
            "lock_key": "user_123_daily",
            "operation_id": "op_20231221_0001",
            "total_count": 10,
            "completed_count": 3,
            "results": [42, 17, 89],
            "prize_results": [{"id": "gold", "name": "Gold", "probability": 0.1, "value": 500}],
            "errors": [{"draw_index": 4, "error_message": "rng timeout", "timestamp": 1703123600}],
            "start_time": 1703123456,
            "last_update_time": 1703123789,
        },
    )


def test_go_escapes_decode_to_the_characters_the_engine_held():
    outcome = convert(
        "lottery:state:guild<A&B>:member:7:op_20231221_0002", _raw({"file": "html_escapes.json"})
    )
    assert isinstance(outcome, Converted)
    assert outcome.lock_key == "guild<A&B>:member:7"
    assert outcome.state["prize_results"][0]["name"] == '<Rare> & "Shiny"'
    separators = convert("lottery:state:user_2028:op_20231221_0003", _raw({"file": "line_separators.json"}))
    assert isinstance(separators, Converted)
    assert separators.state["prize_results"][0]["name"] == "Gold\u2028Dragon"


def test_integral_float_probability_is_kept_as_the_engine_wrote_it():
    outcome = convert("lottery:state:user_floats:op_20231221_0004", _raw({"file": "integral_floats.json"}))
    assert isinstance(outcome, Converted)
    probabilities = [prize["probability"] for prize in outcome.state["prize_results"]]
    assert probabilities == [1, 0, 0.5, 1e-7]
    assert [type(p) for p in probabilities] == [int, int, float, float]


def test_every_refusal_of_the_issue_is_covered_by_a_fixture():
    refused = {entry["name"] for entry in ENTRIES if entry["expect"] == "refused"}
    assert {
        "last_update_time_zero",
        "null_prize",
        "total_count_over_limit",
        "results_beyond_2_53",
        "braces_in_lock_key",
        "draw_index_zero",
    } <= refused


# --- keys ----------------------------------------------------------------------------


def test_engine_key_takes_the_last_segment_as_operation_id_and_the_rest_as_lock_key():
    assert parse_engine_key("lottery:state:guild:7:member:42:op_1") == ("guild:7:member:42", "op_1")
    assert parse_engine_key("game:state:user_1:op-2", prefix="game") == ("user_1", "op-2")


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("other:state:user_1:op_1", "key"),
        ("lottery:state:op_1", "key"),
        ("lottery:state::op_1", "key"),
        ("lottery:state:user_1:", "operation_id"),
        ("lottery:state:user_1:op 1", "operation_id"),
        ("lottery:state:user}1:op_1", "lock_key"),
        ("lottery:state:user\t1:op_1", "lock_key"),
    ],
)
def test_engine_key_that_names_no_importable_operation_is_refused_with_its_part(key, field):
    with pytest.raises(KeyRefused) as caught:
        parse_engine_key(key)
    assert caught.value.field == field


def test_sidecar_key_with_an_engine_document_is_the_engines_and_refused_for_its_braces():
    document = b'{"lock_key":"{42}","total_count":1,"completed_count":0,"start_time":1,"last_update_time":1}'
    outcome = convert("lottery:state:{42}:op_1", document)
    assert isinstance(outcome, Refusal)
    assert outcome.field == "lock_key"


def test_key_outside_the_prefix_is_not_an_engine_state():
    assert isinstance(convert("lottery:ops:{user}", b"{}"), NotEngineState)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (b"[1, 2]", "document"),
        (b'"text"', "document"),
        (b"\xff\xfe", "document"),
        (b'{"total_count":1,"completed_count":0,"start_time":1,"last_update_time":1}', "lock_key"),
        (b'{"lock_key":"u","operation_id":"other","total_count":1,"completed_count":0}', "operation_id"),
        (b'{"lock_key":"u","completed_count":0,"start_time":1,"last_update_time":1}', "total_count"),
        (
            b'{"lock_key":"u","total_count":1,"completed_count":0,"start_time":1,"last_update_time":1,'
            b'"version":3}',
            "version",
        ),
        (
            b'{"lock_key":"u","total_count":1,"completed_count":0,"start_time":1,"last_update_time":1,'
            b'"metadata":{"a":"b"}}',
            "metadata",
        ),
        (
            b'{"lock_key":"u","total_count":1.0,"completed_count":0,"start_time":1,"last_update_time":1}',
            "total_count",
        ),
    ],
)
def test_document_the_engine_never_wrote_is_refused_naming_the_field(document, field):
    outcome = convert("lottery:state:u:op_1", document)
    assert isinstance(outcome, Refusal)
    assert outcome.field == field, str(outcome)


def test_state_past_the_size_cap_is_refused_not_truncated():
    document = {
        "lock_key": "u",
        "total_count": MAX_TOTAL,
        "completed_count": MAX_TOTAL,
        "results": None,
        "prize_results": [{"id": "p" * 200, "name": "n" * 200, "probability": 0.5, "value": 1}] * 2000,
        "errors": None,
        "start_time": 1,
        "last_update_time": 1,
    }
    outcome = convert("lottery:state:u:op_1", _go_json(document))
    assert isinstance(outcome, Refusal)
    assert outcome.field == "state"


# --- properties ----------------------------------------------------------------------

_text = st.text(max_size=12)


@st.composite
def engine_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document the engine writes for a state the sidecar's rules accept (failed draws numbered rising)."""
    total = draw(st.integers(1, 12) | st.integers(1, MAX_TOTAL))
    completed = draw(st.integers(0, total))
    failed = draw(st.integers(0, min(total - completed, 3)))
    drawn = st.integers(1, max(1, completed + failed))
    indexes = sorted(draw(st.sets(drawn, min_size=failed, max_size=failed))) if failed else []
    start = draw(st.integers(1, INT64_MAX))

    def maybe_list(items: st.SearchStrategy[Any], size: int) -> st.SearchStrategy[Any]:
        return st.none() | st.lists(items, max_size=min(size, 3))  # nil slices are null, empty ones []

    prize = st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=12),
            "name": _text,
            "probability": st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0),
            "value": st.integers(DRAW_INT_MIN, DRAW_INT_MAX),
        }
    )
    errors = [
        {"draw_index": index, "error_message": draw(_text), "timestamp": draw(st.integers(0, INT64_MAX))}
        for index in indexes
    ]
    return {
        "lock_key": draw(lock_keys),
        "total_count": total,
        "completed_count": completed,
        "results": draw(maybe_list(st.integers(DRAW_INT_MIN, DRAW_INT_MAX), completed)),
        "prize_results": draw(maybe_list(prize, completed)),
        "errors": errors or draw(st.sampled_from([None, []])),
        "start_time": start,
        "last_update_time": draw(st.integers(start, INT64_MAX)),
    }


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)


@PROPERTY_SETTINGS
@given(document=engine_documents(), operation_id=operation_ids)
def test_engine_document_as_go_writes_it_converts_to_exactly_its_data(document, operation_id):
    key = f"lottery:state:{document['lock_key']}:{operation_id}"
    written = _go_json(document)
    outcome = convert(key, written)
    assert isinstance(outcome, Converted), outcome
    # Exactly what the engine wrote (an integral probability stays the int Go wrote)...
    assert json.dumps(outcome.state) == json.dumps(_expected(json.loads(written), operation_id))
    # ...which holds the values the engine had.
    assert outcome.state == _expected(document, operation_id)


@PROPERTY_SETTINGS
@given(
    document=engine_documents(),
    field=st.sampled_from(ENGINE_FIELDS),
    value=_json_values | st.just(KeyError),
)
def test_document_with_a_field_broken_converts_unchanged_or_is_refused(document, field, value):
    if value is KeyError:
        del document[field]
    else:
        document[field] = value
    outcome = convert(f"lottery:state:{document.get('lock_key', 'u')}:op_1", json.dumps(document))
    if isinstance(outcome, Converted):
        assert json.dumps(outcome.state) == json.dumps(_expected(document, "op_1"))
        check_state(outcome.state)
    else:
        assert isinstance(outcome, Refusal)
        assert outcome.field
        assert outcome.problem


@PROPERTY_SETTINGS
@given(document=engine_documents(), operation_id=operation_ids, version=st.integers(1, INT64_MAX))
def test_converted_state_round_trips_through_the_sidecars_stored_form(document, operation_id, version):
    outcome = convert(f"lottery:state:{document['lock_key']}:{operation_id}", _go_json(document))
    assert isinstance(outcome, Converted)
    stored = decode_state(encode_state({**outcome.state, "version": version}))
    assert stored == {**outcome.state, "version": version}


@PROPERTY_SETTINGS
@given(lock_key=lock_keys, operation_id=operation_ids)
def test_any_valid_lock_key_and_operation_id_round_trip_through_the_engine_key(lock_key, operation_id):
    assert parse_engine_key(f"lottery:state:{lock_key}:{operation_id}") == (lock_key, operation_id)
