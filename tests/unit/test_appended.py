"""Saves that send only the draws they append (ops/accepted.check_append, codec.extend_head).

The promise: a save sending the draws a state appends to the state this daemon accepted gets
the answer the whole state would get (the same head, digest, claim and remembered state, or the
same error with the same message), and the head spliced together is byte for byte the one
encode_head makes of the whole state, so Redis stores exactly what a whole save would store.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drawstate.limits import Limits
from drawstate.rules import InvalidState
from drawstated.codec import DRAW_LISTS, StateTooLarge, draw_lists, encode_head, extend_head
from drawstated.ops.accepted import Accepted, check_append, check_save
from tests.unit.states import prize, valid_state
from tests.unit.strategies import PROPERTY_SETTINGS
from tests.unit.test_accepted import answer, appended, extensions

LIMITS = Limits()
#: What a save sending only its appended draws can change: the rest is fixed by its base.
_APPENDABLE = frozenset({"completed_count", "last_update_time", *DRAW_LISTS})


def append_of(base: dict[str, Any], new: dict[str, Any], accepted: Accepted) -> dict[str, Any]:
    """The `append` a client sends for `new` when it last saved `base` (whose base is accepted.digest)."""
    append: dict[str, Any] = {
        "lock_key": base["lock_key"],
        "operation_id": base["operation_id"],
        "base": accepted.digest,
        "completed_count": new["completed_count"],
        "last_update_time": new["last_update_time"],
    }
    for name in DRAW_LISTS:
        added = new[name][len(base[name]) :]
        if added:
            append[name] = added
    return append


def appended_answer(append: dict[str, Any], previous: Accepted, limits: Limits = LIMITS) -> tuple[Any, ...]:
    try:
        checked = check_append(append, limits, previous)
    except (InvalidState, StateTooLarge) as exc:
        return type(exc).__name__, str(exc)
    return checked.head, checked.digest, checked.accepted


def only_appends(base: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether `new` is `base` with draws appended and its counters changed, and nothing else."""
    same = set(new) == set(base) and all(new[name] == base[name] for name in base if name not in _APPENDABLE)
    return same and all(
        type(new[name]) is list and new[name][: len(base[name])] == base[name] for name in DRAW_LISTS
    )


@PROPERTY_SETTINGS
@given(appended(), st.sampled_from([None, 300, 600, 1200]))
def test_appended_draws_valid_or_not_get_the_answer_the_whole_state_gets(
    pair: tuple[dict[str, Any], dict[str, Any]], max_state_bytes: int | None
) -> None:
    base, new = pair
    limits = LIMITS if max_state_bytes is None else Limits(max_state_bytes=max_state_bytes)
    previous = answer(base, None, limits)[-1]
    assume(isinstance(previous, Accepted))  # the base fits these limits
    whole = answer(new, previous, limits)
    assert appended_answer(append_of(base, new, previous), previous, limits) == whole
    assert whole == answer(new, None, limits)


@PROPERTY_SETTINGS
@given(extensions())
def test_counters_of_any_value_get_the_answer_the_whole_state_gets(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    base, new = pair
    assume(only_appends(base, new))
    previous = check_save(base, LIMITS, None).accepted
    assert appended_answer(append_of(base, new, previous), previous) == answer(new, previous)


@PROPERTY_SETTINGS
@given(appended())
def test_the_spliced_head_is_the_whole_state_s_head_byte_for_byte(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    base, new = pair
    try:
        expected = encode_head(new)
    except Exception:  # a draw orjson cannot encode: nothing to splice
        return
    head = encode_head(base)
    lengths = [len(text) for text in draw_lists(head, base)]
    added = [expected_text(base, new, name) for name in DRAW_LISTS]
    extended, texts = extend_head(head, lengths, new["completed_count"], new["last_update_time"], added)
    assert extended == expected
    assert [bytes(text) for text in texts] == [bytes(text) for text in draw_lists(expected, new)]


def expected_text(base: dict[str, Any], new: dict[str, Any], name: str) -> bytes:
    added = new[name][len(base[name]) :]
    return orjson.dumps(added)[1:-1] if added else b""


def test_a_head_not_laid_out_as_described_is_refused() -> None:
    base = valid_state()
    head = encode_head(base)
    lengths = [len(text) for text in draw_lists(head, base)]
    with pytest.raises(ValueError, match="draw lists"):
        extend_head(head, [lengths[0] + 1, *lengths[1:]], 4, base["last_update_time"], [b"", b"", b""])


def test_an_append_past_the_size_cap_is_refused_as_the_whole_state_is() -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None).accepted
    new = copy.deepcopy(base)
    new["completed_count"] = 4
    new["results"].append(1)
    new["prize_results"].append(prize(id="x" * 200))
    limits = Limits(max_state_bytes=len(previous.head) + 50)
    expected = answer(new, previous, limits)
    assert expected[0] == "StateTooLarge"
    assert appended_answer(append_of(base, new, previous), previous, limits) == expected


@pytest.mark.parametrize("value", [{}, 0, "", False, "x", {"a": 1}, 1.5])
def test_a_draw_list_that_is_not_a_list_is_refused_as_in_the_whole_state(value: object) -> None:
    base = valid_state()
    previous = check_save(base, LIMITS, None).accepted
    for name in DRAW_LISTS:
        whole = {**copy.deepcopy(base), name: value}
        append = {**append_of(base, base, previous), name: value}
        expected = answer(whole, previous)
        assert expected[0] == "InvalidState"
        assert appended_answer(append, previous) == expected
