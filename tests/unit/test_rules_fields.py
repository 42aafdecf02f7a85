"""DrawState rules (DESIGN §2): the state map, lock key, operation id and counts."""

from __future__ import annotations

import pytest

from drawstate.limits import MAX_TOTAL, Limits
from drawstate.model import InvalidState, check_lock_key, check_operation_id, check_state
from tests.unit.states import assert_rejected, minimal_state, valid_state, without


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
