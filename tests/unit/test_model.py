"""The dataclass face of the model (DrawState, Prize, DrawError) and new_operation_id."""

from __future__ import annotations

import calendar
import re
from typing import Any

import pytest

from drawstate.model import (
    DrawError,
    DrawState,
    InvalidState,
    Prize,
    check_operation_id,
    new_operation_id,
)
from tests.unit.states import START, valid_state, without

# --- dataclasses --------------------------------------------------------------------


def make_state(**changes: Any) -> DrawState:
    values: dict[str, Any] = {
        "lock_key": "player:1001",
        "operation_id": "20240101_120000_deadbeef",
        "total_count": 10,
        "start_time": START,
        "last_update_time": START,
    }
    values.update(changes)
    return DrawState(**values)


def test_to_dict_omits_empty_lists_and_metadata_like_go_omitempty() -> None:
    assert make_state().to_dict() == {
        "lock_key": "player:1001",
        "operation_id": "20240101_120000_deadbeef",
        "total_count": 10,
        "completed_count": 0,
        "start_time": START,
        "last_update_time": START,
        "version": 0,
    }


def test_to_dict_keeps_non_empty_lists_and_metadata_in_engine_order() -> None:
    state = make_state(
        completed_count=1,
        results=[5],
        prize_results=[Prize("sword", "Sword", 0.5, 10)],
        errors=[DrawError(2, "boom", START)],
        version=4,
        metadata={"user_id": "1001"},
    )
    data = state.to_dict()
    assert list(data) == [
        "lock_key",
        "operation_id",
        "total_count",
        "completed_count",
        "results",
        "prize_results",
        "errors",
        "start_time",
        "last_update_time",
        "version",
        "metadata",
    ]
    assert data["prize_results"] == [{"id": "sword", "name": "Sword", "probability": 0.5, "value": 10}]
    assert data["errors"] == [{"draw_index": 2, "error_message": "boom", "timestamp": START}]


def test_to_dict_copies_lists_so_callers_cannot_mutate_the_state() -> None:
    state = make_state(completed_count=1, results=[5], metadata={"a": "b"})
    data = state.to_dict()
    data["results"].append(6)
    data["metadata"]["c"] = "d"
    assert state.results == [5]
    assert state.metadata == {"a": "b"}


def test_from_dict_builds_the_dataclasses() -> None:
    state = DrawState.from_dict(valid_state())
    assert state.prize_results[0] == Prize("sword", "Sword", 0.25, 100)
    assert state.prize_results[1].probability == 1.0
    assert isinstance(state.prize_results[1].probability, float)
    assert state.errors == [DrawError(4, "rng timeout", START + 5)]
    assert state.version == 2
    assert state.metadata == {"user_id": "1001", "banner": "summer"}


def test_from_dict_without_version_gives_version_zero() -> None:
    assert DrawState.from_dict(without("version")).version == 0


def test_from_dict_rejects_a_rule_breaking_state() -> None:
    with pytest.raises(InvalidState) as info:
        DrawState.from_dict(valid_state(completed_count=11))
    assert info.value.path == "completed_count"


def test_validate_rejects_a_rule_breaking_dataclass() -> None:
    with pytest.raises(InvalidState) as info:
        make_state(completed_count=1, prize_results=[Prize("")]).validate()
    assert info.value.path == "prize_results[0].id"


def test_from_dict_of_to_dict_round_trips_a_typical_state() -> None:
    state = DrawState.from_dict(valid_state())
    assert DrawState.from_dict(state.to_dict()) == state


def test_from_dict_of_to_dict_round_trips_an_empty_fresh_state() -> None:
    state = make_state()
    assert DrawState.from_dict(state.to_dict()) == state


# The property over generated states lives in test_codec.py, next to the JSON round trip.


@pytest.mark.parametrize(
    ("completed", "n_errors", "next_index", "finished"),
    [
        pytest.param(0, 0, 1, False, id="fresh"),
        pytest.param(3, 0, 4, False, id="3-done"),
        pytest.param(3, 2, 6, False, id="3-done-2-failed"),
        pytest.param(8, 2, 11, True, id="8-done-2-failed-of-10"),
        pytest.param(10, 0, 11, True, id="all-done"),
        pytest.param(0, 10, 11, True, id="all-failed"),
    ],
)
def test_next_draw_index_and_finished_count_failed_draws(
    completed: int, n_errors: int, next_index: int, finished: bool
) -> None:
    errors = [DrawError(i + 1, "boom", START) for i in range(n_errors)]
    state = make_state(total_count=10, completed_count=completed, errors=errors)
    assert state.next_draw_index == next_index
    assert state.finished is finished


def test_prize_and_draw_error_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Prize("sword").id = "gem"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        DrawError(1, "boom", START).draw_index = 2  # type: ignore[misc]


# --- new_operation_id -----------------------------------------------------------------

OPERATION_ID_FORMAT = re.compile(r"(\d{8})_(\d{6})_([0-9a-f]{8})")


def test_new_operation_id_has_utc_timestamp_and_8_hex() -> None:
    now = calendar.timegm((2024, 2, 29, 23, 59, 58, 0, 0, 0)) + 0.75
    match = OPERATION_ID_FORMAT.fullmatch(new_operation_id(now=now))
    assert match is not None
    assert match.group(1, 2) == ("20240229", "235958")


def test_new_operation_id_at_epoch_is_19700101() -> None:
    assert new_operation_id(now=0).startswith("19700101_000000_")


def test_new_operation_id_is_a_valid_operation_id() -> None:
    op = new_operation_id()
    assert check_operation_id(op) == op
    assert OPERATION_ID_FORMAT.fullmatch(op)


def test_new_operation_id_is_unique_for_the_same_second() -> None:
    ids = {new_operation_id(now=START) for _ in range(50)}
    assert len(ids) == 50
