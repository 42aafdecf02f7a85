"""DrawState rules (DESIGN §2): draws, prizes, failed draws, times, version, metadata."""

from __future__ import annotations

import math
from typing import Any

import pytest

from drawstate.limits import DRAW_INT_MAX, DRAW_INT_MIN, INT64_MAX
from drawstate.model import check_state
from tests.unit.states import START, assert_rejected, draw_error, minimal_state, prize, valid_state, without

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


@pytest.mark.parametrize("errors", [0, "", False, {}, 0.0])
def test_errors_that_are_empty_but_not_a_list_are_rejected(errors: object) -> None:
    # A falsy value once slipped past the fast path, which only sent non-empty errors to the walk.
    assert_rejected(valid_state(errors=errors), "errors")


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
    # Draws before the failed one were granted: completed_count covers them.
    check_state(minimal_state(total_count=10, completed_count=item["draw_index"] - 1, errors=[item]))


@pytest.mark.parametrize(
    ("completed", "indexes", "path"),
    [
        pytest.param(0, [1, 1], "errors[1].draw_index", id="same-index-twice"),
        pytest.param(1, [2, 1], "errors[1].draw_index", id="indexes-fall"),
        pytest.param(0, [2], "errors[0].draw_index", id="past-the-draws-made"),
        pytest.param(2, [1, 5], "errors[1].draw_index", id="second-past-the-draws-made"),
    ],
)
def test_failed_draw_indexes_rise_within_the_draws_made_so_none_is_also_granted(
    completed: int, indexes: list[int], path: str
) -> None:
    errors = [draw_error(draw_index=index) for index in indexes]
    assert_rejected(minimal_state(total_count=10, completed_count=completed, errors=errors), path)


def test_failed_draws_between_granted_ones_are_accepted() -> None:
    errors = [draw_error(draw_index=2), draw_error(draw_index=5)]
    check_state(minimal_state(total_count=10, completed_count=4, errors=errors))


@pytest.mark.parametrize(
    ("item", "path"),
    [
        pytest.param(draw_error(draw_index=0), "errors[0].draw_index", id="draw-index-0"),
        pytest.param(draw_error(draw_index=-1), "errors[0].draw_index", id="draw-index-negative"),
        pytest.param(draw_error(draw_index=11), "errors[0].draw_index", id="draw-index-past-total"),
        pytest.param(draw_error(draw_index=2), "errors[0].draw_index", id="draw-index-past-draws-made"),
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
