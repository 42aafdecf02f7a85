"""DrawState rules (DESIGN §2) on the dict form, and the dataclass face of the model."""

from __future__ import annotations

import calendar
import math
import re
from typing import Any

import pytest

from drawstate.limits import DRAW_INT_MAX, DRAW_INT_MIN, INT64_MAX, MAX_TOTAL, Limits
from drawstate.model import (
    DrawError,
    DrawState,
    InvalidState,
    Prize,
    check_lock_key,
    check_operation_id,
    check_state,
    new_operation_id,
)

START = 1_700_000_000


def valid_state(**changes: Any) -> dict[str, Any]:
    """A small valid state (3 of 10 draws done, one failed draw); `changes` override fields."""
    state: dict[str, Any] = {
        "lock_key": "player:1001",
        "operation_id": "20240101_120000_deadbeef",
        "total_count": 10,
        "completed_count": 3,
        "results": [7, 42, -1],
        "prize_results": [
            {"id": "sword", "name": "Sword", "probability": 0.25, "value": 100},
            {"id": "gem", "name": "", "probability": 1, "value": -5},
        ],
        "errors": [{"draw_index": 4, "error_message": "rng timeout", "timestamp": START + 5}],
        "start_time": START,
        "last_update_time": START + 10,
        "version": 2,
        "metadata": {"user_id": "1001", "banner": "summer"},
    }
    state.update(changes)
    return state


def prize(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": "sword", "name": "Sword", "probability": 0.5, "value": 10}
    item.update(changes)
    return item


def draw_error(**changes: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"draw_index": 1, "error_message": "boom", "timestamp": START}
    item.update(changes)
    return item


def without(field: str, **changes: Any) -> dict[str, Any]:
    state = valid_state(**changes)
    del state[field]
    return state


def assert_rejected(state: object, path: str, limits: Limits | None = None) -> InvalidState:
    with pytest.raises(InvalidState) as info:
        if limits is None:
            check_state(state)
        else:
            check_state(state, limits)
    assert info.value.path == path, f"expected path {path!r}, got {info.value.path!r}: {info.value}"
    assert str(info.value).startswith(f"{path}: ")
    return info.value


def test_valid_state_fixture_passes_every_rule() -> None:
    check_state(valid_state())


def test_invalid_state_is_a_value_error_carrying_path_and_problem() -> None:
    exc = InvalidState("lock_key", "too long")
    assert isinstance(exc, ValueError)
    assert (exc.path, exc.problem, str(exc)) == ("lock_key", "too long", "lock_key: too long")


def test_state_that_is_not_a_map_is_rejected() -> None:
    assert_rejected(["lock_key", "x"], "state")


# --- lock_key ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "lock_key",
    [
        pytest.param("a", id="one-char"),
        pytest.param("x" * 200, id="200-chars"),
        pytest.param("player:1001:banner:summer", id="colons"),
        pytest.param("guild 7 / player 3", id="spaces-and-slash"),
        pytest.param("玩家:1001", id="non-ascii-printable"),
        pytest.param("a*b?[c]", id="glob-chars"),
    ],
)
def test_lock_key_accepted(lock_key: str) -> None:
    check_state(valid_state(lock_key=lock_key))
    assert check_lock_key(lock_key) == lock_key


@pytest.mark.parametrize(
    "lock_key",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 201, id="201-chars"),
        pytest.param("a{b", id="open-brace"),
        pytest.param("a}b", id="close-brace"),
        pytest.param("{player}", id="hash-tag"),
        pytest.param("a\nb", id="newline"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\u200bb", id="zero-width-space"),
        pytest.param("a\u00a0b", id="no-break-space"),
        pytest.param("a\ud800b", id="lone-surrogate"),
        pytest.param(1001, id="int"),
        pytest.param(None, id="none"),
        pytest.param(b"player", id="bytes"),
    ],
)
def test_lock_key_rejected(lock_key: object) -> None:
    assert_rejected(valid_state(lock_key=lock_key), "lock_key")


def test_lock_key_missing_is_rejected() -> None:
    assert_rejected(without("lock_key"), "lock_key")


def test_lock_key_length_follows_limits() -> None:
    limits = Limits(max_lock_key_chars=5)
    check_state(valid_state(lock_key="abcde"), limits)
    assert_rejected(valid_state(lock_key="abcdef"), "lock_key", limits)


# --- operation_id -----------------------------------------------------------------


@pytest.mark.parametrize(
    "operation_id",
    [
        pytest.param("a", id="one-char"),
        pytest.param("x" * 64, id="64-chars"),
        pytest.param("AZaz09_-", id="whole-charset"),
        pytest.param("20240101_120000_deadbeef", id="engine-format"),
    ],
)
def test_operation_id_accepted(operation_id: str) -> None:
    check_state(valid_state(operation_id=operation_id))
    assert check_operation_id(operation_id) == operation_id


@pytest.mark.parametrize(
    "operation_id",
    [
        pytest.param("", id="empty"),
        pytest.param("x" * 65, id="65-chars"),
        pytest.param("a b", id="space"),
        pytest.param("a:b", id="colon"),
        pytest.param("a.b", id="dot"),
        pytest.param("a}b", id="brace"),
        pytest.param("a*", id="glob"),
        pytest.param("op\n", id="trailing-newline"),
        pytest.param("café", id="non-ascii-letter"),
        pytest.param("١٢٣", id="non-ascii-digits"),
        pytest.param(42, id="int"),
        pytest.param(None, id="none"),
    ],
)
def test_operation_id_rejected(operation_id: object) -> None:
    assert_rejected(valid_state(operation_id=operation_id), "operation_id")


def test_operation_id_missing_is_rejected() -> None:
    assert_rejected(without("operation_id"), "operation_id")


# --- counts -----------------------------------------------------------------------


def minimal_state(**changes: Any) -> dict[str, Any]:
    """A valid state without lists, so the counts can move freely."""
    state = valid_state(results=[], prize_results=[], errors=[], completed_count=0)
    state.update(changes)
    return state


@pytest.mark.parametrize(
    "total",
    [pytest.param(1, id="one"), pytest.param(10, id="ten-pull"), pytest.param(MAX_TOTAL, id="max_total")],
)
def test_total_count_in_range_is_accepted(total: int) -> None:
    check_state(minimal_state(total_count=total))


@pytest.mark.parametrize(
    "total",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(MAX_TOTAL + 1, id="over-max_total"),
        pytest.param(True, id="bool"),
        pytest.param(10.0, id="float"),
        pytest.param("10", id="string"),
        pytest.param(None, id="none"),
    ],
)
def test_total_count_rejected(total: object) -> None:
    assert_rejected(minimal_state(total_count=total), "total_count")


def test_total_count_cap_follows_limits() -> None:
    limits = Limits(max_total=5)
    check_state(minimal_state(total_count=5), limits)
    assert_rejected(minimal_state(total_count=6), "total_count", limits)


@pytest.mark.parametrize(
    "completed",
    [pytest.param(0, id="zero"), pytest.param(5, id="halfway"), pytest.param(10, id="equal-to-total")],
)
def test_completed_count_within_total_is_accepted(completed: int) -> None:
    check_state(minimal_state(total_count=10, completed_count=completed))


@pytest.mark.parametrize(
    "completed",
    [
        pytest.param(-1, id="negative"),
        pytest.param(11, id="over-total"),
        pytest.param(False, id="bool"),
        pytest.param(3.0, id="float"),
        pytest.param(None, id="none"),
    ],
)
def test_completed_count_rejected(completed: object) -> None:
    assert_rejected(minimal_state(total_count=10, completed_count=completed), "completed_count")


# --- results / prize_results / errors ---------------------------------------------


def test_results_as_long_as_completed_count_are_accepted() -> None:
    check_state(minimal_state(completed_count=3, results=[1, 2, 3]))


def test_results_longer_than_completed_count_are_rejected() -> None:
    assert_rejected(minimal_state(completed_count=2, results=[1, 2, 3]), "results")


def test_results_absent_or_none_count_as_empty() -> None:
    check_state(without("results"))
    check_state(valid_state(results=None))


@pytest.mark.parametrize(
    "results",
    [pytest.param({"0": 1}, id="map"), pytest.param("123", id="string"), pytest.param(3, id="int")],
)
def test_results_that_are_not_a_list_are_rejected(results: object) -> None:
    assert_rejected(valid_state(results=results), "results")


@pytest.mark.parametrize(
    ("item", "index"),
    [
        pytest.param(True, 1, id="bool"),
        pytest.param(1.5, 1, id="float"),
        pytest.param("7", 1, id="string"),
        pytest.param(None, 1, id="none"),
        pytest.param(DRAW_INT_MAX + 1, 1, id="over-2**53"),
        pytest.param(DRAW_INT_MIN - 1, 1, id="under-minus-2**53"),
        pytest.param(INT64_MAX, 1, id="int64-max"),
    ],
)
def test_results_item_that_is_not_a_json_safe_integer_is_rejected(item: object, index: int) -> None:
    assert_rejected(valid_state(results=[7, item, 9]), f"results[{index}]")


def test_results_accept_json_safe_extremes() -> None:
    check_state(valid_state(results=[DRAW_INT_MIN, 0, DRAW_INT_MAX]))


def test_prize_results_as_long_as_completed_count_are_accepted() -> None:
    check_state(minimal_state(completed_count=2, prize_results=[prize(), prize(id="gem")]))


def test_prize_results_longer_than_completed_count_are_rejected() -> None:
    assert_rejected(minimal_state(completed_count=1, prize_results=[prize(), prize()]), "prize_results")


def test_prize_results_that_are_not_a_list_are_rejected() -> None:
    assert_rejected(valid_state(prize_results=prize()), "prize_results")


@pytest.mark.parametrize(
    ("completed", "n_errors"),
    [
        pytest.param(8, 2, id="8-done-2-failed-of-10"),
        pytest.param(0, 10, id="all-failed"),
        pytest.param(10, 0, id="all-done"),
    ],
)
def test_completed_plus_errors_up_to_total_is_accepted(completed: int, n_errors: int) -> None:
    errors = [draw_error(draw_index=i + 1) for i in range(n_errors)]
    check_state(minimal_state(total_count=10, completed_count=completed, errors=errors))


@pytest.mark.parametrize(
    ("completed", "n_errors"),
    [pytest.param(8, 3, id="8-done-3-failed-of-10"), pytest.param(0, 11, id="11-failed-of-10")],
)
def test_completed_plus_errors_over_total_is_rejected(completed: int, n_errors: int) -> None:
    errors = [draw_error(draw_index=1) for _ in range(n_errors)]
    assert_rejected(minimal_state(total_count=10, completed_count=completed, errors=errors), "errors")


def test_errors_that_are_not_a_list_are_rejected() -> None:
    assert_rejected(valid_state(errors=draw_error()), "errors")


# --- Prize ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(prize(), id="typical"),
        pytest.param(prize(name=""), id="empty-name"),
        pytest.param(prize(probability=0.0), id="probability-0"),
        pytest.param(prize(probability=1.0), id="probability-1"),
        pytest.param(prize(probability=0), id="probability-int-0"),
        pytest.param(prize(probability=1), id="probability-int-1"),
        pytest.param(prize(probability=5e-324), id="probability-denormal"),
        pytest.param(prize(value=DRAW_INT_MIN), id="value-json-safe-min"),
        pytest.param(prize(value=DRAW_INT_MAX), id="value-json-safe-max"),
        pytest.param(prize(id="x" * 256), id="id-256-chars"),
    ],
)
def test_prize_accepted(item: dict[str, Any]) -> None:
    check_state(valid_state(prize_results=[item]))


@pytest.mark.parametrize(
    ("item", "path"),
    [
        pytest.param(prize(id=""), "prize_results[0].id", id="empty-id"),
        pytest.param(prize(id=7), "prize_results[0].id", id="int-id"),
        pytest.param(prize(id=None), "prize_results[0].id", id="none-id"),
        pytest.param(prize(id="x" * 257), "prize_results[0].id", id="id-too-long"),
        pytest.param(prize(name=3), "prize_results[0].name", id="int-name"),
        pytest.param(prize(name="x" * 257), "prize_results[0].name", id="name-too-long"),
        pytest.param(prize(probability=-0.01), "prize_results[0].probability", id="probability-negative"),
        pytest.param(prize(probability=1.0001), "prize_results[0].probability", id="probability-over-1"),
        pytest.param(prize(probability=2), "prize_results[0].probability", id="probability-int-2"),
        pytest.param(prize(probability=math.nan), "prize_results[0].probability", id="probability-nan"),
        pytest.param(prize(probability=math.inf), "prize_results[0].probability", id="probability-inf"),
        pytest.param(prize(probability=-math.inf), "prize_results[0].probability", id="probability-neg-inf"),
        pytest.param(prize(probability=True), "prize_results[0].probability", id="probability-bool"),
        pytest.param(prize(probability="0.5"), "prize_results[0].probability", id="probability-string"),
        pytest.param(prize(probability=None), "prize_results[0].probability", id="probability-none"),
        pytest.param(prize(value=1.0), "prize_results[0].value", id="value-float"),
        pytest.param(prize(value=True), "prize_results[0].value", id="value-bool"),
        pytest.param(prize(value="10"), "prize_results[0].value", id="value-string"),
        pytest.param(prize(value=DRAW_INT_MAX + 1), "prize_results[0].value", id="value-over-2**53"),
        pytest.param(prize(rarity="SSR"), "prize_results[0]", id="unknown-field"),
        pytest.param(["sword"], "prize_results[0]", id="not-a-map"),
    ],
)
def test_prize_rejected(item: object, path: str) -> None:
    assert_rejected(valid_state(prize_results=[item]), path)


def test_prize_error_path_names_the_offending_index() -> None:
    assert_rejected(valid_state(prize_results=[prize(), prize(id="")]), "prize_results[1].id")


# --- DrawError ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "item",
    [
        pytest.param(draw_error(draw_index=1), id="first-draw"),
        pytest.param(draw_error(draw_index=10), id="last-draw"),
        pytest.param(draw_error(error_message=""), id="empty-message"),
        pytest.param(draw_error(timestamp=0), id="timestamp-zero"),
    ],
)
def test_draw_error_accepted(item: dict[str, Any]) -> None:
    check_state(minimal_state(total_count=10, errors=[item]))


@pytest.mark.parametrize(
    ("item", "path"),
    [
        pytest.param(draw_error(draw_index=0), "errors[0].draw_index", id="draw-index-0"),
        pytest.param(draw_error(draw_index=-1), "errors[0].draw_index", id="draw-index-negative"),
        pytest.param(draw_error(draw_index=11), "errors[0].draw_index", id="draw-index-past-total"),
        pytest.param(draw_error(draw_index=True), "errors[0].draw_index", id="draw-index-bool"),
        pytest.param(draw_error(draw_index=1.0), "errors[0].draw_index", id="draw-index-float"),
        pytest.param(draw_error(error_message=None), "errors[0].error_message", id="message-none"),
        pytest.param(draw_error(error_message="x" * 1025), "errors[0].error_message", id="message-too-long"),
        pytest.param(draw_error(timestamp=True), "errors[0].timestamp", id="timestamp-bool"),
        pytest.param(draw_error(timestamp="now"), "errors[0].timestamp", id="timestamp-string"),
        pytest.param(draw_error(retry=1), "errors[0]", id="unknown-field"),
        pytest.param("boom", "errors[0]", id="not-a-map"),
    ],
)
def test_draw_error_rejected(item: object, path: str) -> None:
    assert_rejected(minimal_state(total_count=10, errors=[item]), path)


# --- times, version ---------------------------------------------------------------


def test_start_time_of_one_is_accepted() -> None:
    check_state(valid_state(start_time=1, last_update_time=1))


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(0, id="zero"),
        pytest.param(-5, id="negative"),
        pytest.param(True, id="bool"),
        pytest.param(float(START), id="float"),
        pytest.param(None, id="none"),
    ],
)
def test_start_time_rejected(start: object) -> None:
    assert_rejected(valid_state(start_time=start), "start_time")


def test_last_update_time_equal_to_start_time_is_accepted() -> None:
    check_state(valid_state(start_time=START, last_update_time=START))


@pytest.mark.parametrize(
    "last",
    [
        pytest.param(START - 1, id="before-start"),
        pytest.param(True, id="bool"),
        pytest.param(float(START + 1), id="float"),
        pytest.param(None, id="none"),
    ],
)
def test_last_update_time_rejected(last: object) -> None:
    assert_rejected(valid_state(start_time=START, last_update_time=last), "last_update_time")


def test_version_absent_or_none_is_accepted() -> None:
    check_state(without("version"))
    check_state(valid_state(version=None))


@pytest.mark.parametrize(
    "version",
    [pytest.param(-1, id="negative"), pytest.param(True, id="bool"), pytest.param("3", id="string")],
)
def test_version_rejected(version: object) -> None:
    assert_rejected(valid_state(version=version), "version")


# --- metadata ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(None, id="none"),
        pytest.param({}, id="empty"),
        pytest.param({f"k{i}": "v" for i in range(32)}, id="32-entries"),
        pytest.param({"price_paid": ""}, id="empty-value"),
        pytest.param({"k" * 64: "v" * 1024}, id="longest-key-and-value"),
    ],
)
def test_metadata_accepted(metadata: object) -> None:
    check_state(valid_state(metadata=metadata))


@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        pytest.param({f"k{i}": "v" for i in range(33)}, "metadata", id="33-entries"),
        pytest.param({1001: "user"}, "metadata", id="int-key"),
        pytest.param({"": "v"}, "metadata", id="empty-key"),
        pytest.param({"k" * 65: "v"}, "metadata", id="key-too-long"),
        pytest.param({"price_paid": 1600}, "metadata.price_paid", id="int-value"),
        pytest.param({"vip": True}, "metadata.vip", id="bool-value"),
        pytest.param({"banner": None}, "metadata.banner", id="none-value"),
        pytest.param({"note": "v" * 1025}, "metadata.note", id="value-too-long"),
        pytest.param([("user_id", "1")], "metadata", id="list-of-pairs"),
        pytest.param("user_id=1", "metadata", id="string"),
    ],
)
def test_metadata_rejected(metadata: object, path: str) -> None:
    assert_rejected(valid_state(metadata=metadata), path)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        pytest.param({"metadata": {"note": "\ud800"}}, "metadata.note", id="metadata-value"),
        pytest.param({"prize_results": [prize(name="\udfff")]}, "prize_results[0].name", id="prize-name"),
        pytest.param(
            {"errors": [draw_error(error_message="\ud83c")]}, "errors[0].error_message", id="error-message"
        ),
    ],
)
def test_text_with_lone_surrogate_is_rejected(changes: dict[str, Any], path: str) -> None:
    assert_rejected(valid_state(**changes), path)


# --- unknown fields -----------------------------------------------------------------


@pytest.mark.parametrize(
    "field", [pytest.param("_token", id="token"), pytest.param("LockKey", id="go-style-name")]
)
def test_unknown_state_field_is_rejected(field: str) -> None:
    error = assert_rejected(valid_state(**{field: "x"}), "state")
    assert field in error.problem


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
