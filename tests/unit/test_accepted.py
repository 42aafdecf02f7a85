"""Saves checked by what they append (ops/accepted.py, rules.check_appended) against the full check.

The properties pin the promise that makes the shortcut safe: with or without the accepted state
of the operation, a new state gets the same answer (accepted with the same head and digest, or
refused with the same error), whatever it appends, rewrites or changes. And the claim sent to
save.lua matches the stored digest exactly when the new state keeps the stored identity and
every stored draw.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from drawstate.limits import DRAW_INT_MAX, DRAW_INT_MIN, INT64_MAX, Limits
from drawstate.rules import InvalidState, Recorded, check_appended, check_state, recorded
from drawstated import codec
from drawstated.codec import DRAW_LISTS, StateTooLarge, decode_state, draw_lists, encode_head
from drawstated.ops import accepted as accepted_module
from drawstated.ops.accepted import Accepted, AcceptedStates, check_save
from tests.unit.states import START, prize, valid_state
from tests.unit.strategies import PROPERTY_SETTINGS, draw_ints, prizes, valid_states

LIMITS = Limits()

# --- what a save may append, rewrite or change ------------------------------------------

_not_ints = st.one_of(
    st.integers(DRAW_INT_MAX + 1, INT64_MAX),
    st.integers(-(2**70), DRAW_INT_MIN - 1),
    st.booleans(),
    st.floats(allow_nan=True),
    st.text(max_size=3),
    st.none(),
)
results_items = st.one_of(draw_ints, draw_ints, _not_ints)
prize_items = st.one_of(
    prizes(),
    prizes(),
    prizes().map(lambda item: {**item, "probability": math.nan}),
    prizes().map(lambda item: {**item, "value": 1.5}),
    prizes().map(lambda item: {**item, "extra": 1}),
    prizes().map(lambda item: {key: value for key, value in item.items() if key != "name"}),
    prizes().map(lambda item: dict(reversed(list(item.items())))),
    prizes().map(lambda item: {**item, "id": "\ud800"}),
    _not_ints,
)


def error_items(total: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.fixed_dictionaries(
            {
                "draw_index": st.integers(-1, total + 2),
                "error_message": st.text(max_size=5),
                "timestamp": st.integers(-1, INT64_MAX),
            }
        ),
        st.just({"draw_index": 1}),
        _not_ints,
    )


#: A field set to a value of any kind (valid or not) in the new state.
_any_value = st.one_of(
    st.none(), st.integers(-2, 12), st.integers(0, INT64_MAX), st.text(max_size=4), st.booleans()
)
_CHANGEABLE = ("lock_key", "operation_id", "total_count", "completed_count", "start_time",
               "last_update_time", "version", "metadata", "results", "errors", "bogus")  # fmt: skip


@st.composite
def extensions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(an accepted state, the state a later save sends): draws appended, and maybe more changed."""
    base = draw(valid_states(max_items=4))
    total = base["total_count"]
    new = copy.deepcopy(base)
    new["results"] = base["results"] + draw(st.lists(results_items, max_size=3))
    new["prize_results"] = base["prize_results"] + draw(st.lists(prize_items, max_size=3))
    new["errors"] = base["errors"] + draw(st.lists(error_items(total), max_size=2))
    new["completed_count"] = draw(st.integers(base["completed_count"], total) | st.integers(0, total + 2))
    new["last_update_time"] = draw(st.integers(base["last_update_time"], INT64_MAX))
    if draw(st.booleans()):  # a recorded draw rewritten
        name = draw(st.sampled_from(DRAW_LISTS))
        if base[name]:
            index = draw(st.integers(0, len(base[name]) - 1))
            strategy = {"results": results_items, "prize_results": prize_items}.get(name, error_items(total))
            new[name][index] = draw(strategy)
    if draw(st.booleans()):  # another field changed, to a value of any kind
        new[draw(st.sampled_from(_CHANGEABLE))] = draw(_any_value | st.just({"k": "v"}))
    if draw(st.booleans()):  # metadata changed to other valid metadata
        new["metadata"] = draw(
            st.dictionaries(st.text(min_size=1, max_size=4), st.text(max_size=4), max_size=2)
        )
    return base, new


@st.composite
def appended(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(an accepted state, the same with draws appended, each valid or not): nothing else changes
    but completed_count, which follows the lists where the total leaves room."""
    base = draw(valid_states(max_items=4))
    total = base["total_count"]
    new = copy.deepcopy(base)
    new["results"] += draw(st.lists(results_items, max_size=3))
    new["prize_results"] += draw(st.lists(prize_items, max_size=3))
    new["errors"] += draw(st.lists(error_items(total), max_size=2))
    room = total - len(new["errors"])
    new["completed_count"] = min(
        max(base["completed_count"], len(new["results"]), len(new["prize_results"])), room
    )
    new["completed_count"] = max(new["completed_count"], base["completed_count"])
    return base, new


def answer(state: dict[str, Any], previous: Accepted | None, limits: Limits = LIMITS) -> tuple[Any, ...]:
    """What the daemon makes of a state: its head and digest, or the error it refuses it with."""
    try:
        checked = check_save(state, limits, previous)
    except (InvalidState, StateTooLarge) as exc:
        return type(exc).__name__, str(exc)
    return checked.head, checked.digest, checked.accepted


def texts(state: dict[str, Any], name: str) -> list[bytes]:
    """Each draw's JSON text (a draw orjson cannot encode gets a text no valid draw has)."""
    items = state.get(name)
    if type(items) is not list:
        return [b"\x00not a list"]
    return [_text(item) for item in items]


def _text(item: object) -> bytes:
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return b"\x00" + repr(item).encode()


def keeps(base: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether `new` has `base`'s identity and starts every draw list with `base`'s draws (as text)."""
    same_identity = (base["total_count"], base["start_time"], base["metadata"] or {}) == (
        new["total_count"],
        new["start_time"],
        new["metadata"] or {},
    )
    return same_identity and all(
        texts(new, name)[: len(texts(base, name))] == texts(base, name) for name in DRAW_LISTS
    )


# --- properties ---------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(extensions(), st.sampled_from([None, 300, 600, 1200]))
def test_a_state_gets_the_same_answer_with_or_without_the_accepted_state_it_extends(
    pair: tuple[dict[str, Any], dict[str, Any]], max_state_bytes: int | None
) -> None:
    base, new = pair
    limits = LIMITS if max_state_bytes is None else Limits(max_state_bytes=max_state_bytes)
    previous = answer(base, None, limits)
    assume(isinstance(previous[-1], Accepted))  # the base fits these limits
    assert answer(new, previous[-1], limits) == answer(new, None, limits)


@PROPERTY_SETTINGS
@given(appended())
def test_draws_appended_valid_or_not_get_the_same_answer_as_from_the_full_check(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    base, new = pair
    assert answer(new, answer(base, None)[-1]) == answer(new, None)


@PROPERTY_SETTINGS
@given(extensions())
def test_check_appended_passes_only_states_the_full_check_passes(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    base, new = pair
    assume(all(texts(new, name)[: len(base[name])] == texts(base, name) for name in DRAW_LISTS))
    if check_appended(new, recorded(base), LIMITS):
        check_state(new, LIMITS)


@PROPERTY_SETTINGS
@given(extensions())
def test_the_claim_matches_the_stored_digest_exactly_when_identity_and_every_recorded_draw_are_kept(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    base, new = pair
    stored = check_save(base, LIMITS, None)
    try:
        claim = check_save(new, LIMITS, stored.accepted).expect_digest
    except (InvalidState, StateTooLarge):
        return  # refused before save.lua sees it
    assert (claim == stored.digest) == keeps(base, new)


@PROPERTY_SETTINGS
@given(valid_states())
def test_draw_lists_are_the_json_text_of_each_list_between_its_brackets(state: dict[str, Any]) -> None:
    head = encode_head(state)
    for name, text in zip(DRAW_LISTS, draw_lists(head, state), strict=True):
        assert bytes(text) == (orjson.dumps(state[name])[1:-1] if state[name] else b"")


# --- examples -------------------------------------------------------------------------------


def _next(state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The state after one more granted draw (result 11, prize gem), with `changes`."""
    following = copy.deepcopy(state)
    following["completed_count"] += 1
    following["results"].append(11)
    following["prize_results"].append(prize(id="gem"))
    following["last_update_time"] += 1
    following.update(changes)
    return following


def test_a_save_extending_the_accepted_state_skips_the_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None)
    calls: list[object] = []
    monkeypatch.setattr(accepted_module, "check_state", lambda *args: calls.append(args))
    checked = check_save(_next(base), LIMITS, previous.accepted)
    assert calls == []
    assert checked.expect_digest == previous.digest
    assert checked.accepted.recorded == Recorded(10, 4, 3, 0, 0)


def test_a_save_with_a_rewritten_draw_gets_the_full_check_and_no_matching_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None)
    calls: list[object] = []
    monkeypatch.setattr(accepted_module, "check_state", lambda *args: calls.append(args))
    rewritten = _next(base)
    rewritten["results"][0] = 8  # 7 before: the same length, so the claim is computed but differs
    checked = check_save(rewritten, LIMITS, previous.accepted)
    assert len(calls) == 1
    assert checked.expect_digest not in ("", previous.digest)


def test_a_rewritten_draw_that_breaks_a_rule_is_refused_for_that_draw() -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None)
    rewritten = _next(base)
    rewritten["results"][1] = DRAW_INT_MAX + 1
    with pytest.raises(InvalidState, match=r"^results\[1\]"):
        check_save(rewritten, LIMITS, previous.accepted)


def test_an_appended_draw_that_breaks_a_rule_is_refused_as_without_an_accepted_state() -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None)
    broken = _next(base, prize_results=[*base["prize_results"], prize(probability=2.0)])
    with pytest.raises(InvalidState) as caught:
        check_save(broken, LIMITS, previous.accepted)
    assert caught.value.path == "prize_results[2].probability"


def test_an_appended_result_that_breaks_a_rule_is_refused_for_that_result() -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None).accepted
    with pytest.raises(InvalidState, match=r"^results\[3\]"):
        check_save(_next(base, results=[*base["results"], "11"]), LIMITS, previous)


def test_appended_results_beyond_completed_count_are_refused() -> None:
    base = valid_state(errors=[])
    previous = check_save(base, LIMITS, None).accepted
    with pytest.raises(InvalidState, match=r"^results: 5 results but completed_count is 4"):
        check_save(_next(base, results=[*base["results"], 11, 12]), LIMITS, previous)


def test_failed_draws_are_checked_by_the_ones_appended_and_must_keep_rising() -> None:
    base = valid_state()  # one failed draw, index 4
    previous = check_save(base, LIMITS, None).accepted
    assert previous.recorded.last_error_index == 4
    rising = _next(base, errors=[*base["errors"], {"draw_index": 6, "error_message": "", "timestamp": START}])
    assert check_appended(rising, previous.recorded, LIMITS)
    falling = _next(
        base, errors=[*base["errors"], {"draw_index": 3, "error_message": "", "timestamp": START}]
    )
    assert not check_appended(falling, previous.recorded, LIMITS)
    with pytest.raises(InvalidState, match="indexes rise"):
        check_save(falling, LIMITS, previous)


def test_a_changed_total_is_never_judged_by_the_accepted_draws() -> None:
    base = valid_state()
    previous = check_save(base, LIMITS, None).accepted
    assert not check_appended(_next(base, total_count=9), previous.recorded, LIMITS)


def test_a_stored_digest_is_not_part_of_the_state_read_back() -> None:
    checked = check_save(valid_state(), LIMITS, None)
    raw = checked.head + f',"{codec.DIGEST_FIELD}":"{checked.digest}","version":3,"_token":"t"}}'.encode()
    assert codec.DIGEST_FIELD not in decode_state(raw)


# --- the cache ------------------------------------------------------------------------------


def _entry(total: int = 10, head_bytes: int = 0) -> Accepted:
    return Accepted(Recorded(total, 0, 0, 0, 0), (0, 0, 0), (b"", b"", b""), b"", "", b"{" * head_bytes, 1)


def test_the_cache_drops_the_least_recently_used_operation_past_its_limit() -> None:
    cache = AcceptedStates(2, 1 << 20)
    cache.put("p", "a", _entry(1))
    cache.put("p", "b", _entry(2))
    assert cache.get("p", "a") == _entry(1)  # a is now the most recent
    cache.put("p", "c", _entry(3))
    assert cache.get("p", "b") is None
    assert (cache.get("p", "a"), cache.get("p", "c")) == (_entry(1), _entry(3))
    assert len(cache) == 2


def test_a_cache_of_zero_entries_keeps_nothing() -> None:
    cache = AcceptedStates(0, 1 << 20)
    cache.put("p", "a", _entry())
    assert cache.get("p", "a") is None


def test_the_cache_drops_the_least_recently_used_states_past_its_bytes() -> None:
    cache = AcceptedStates(10, 100)
    cache.put("p", "a", _entry(1, 40))
    cache.put("p", "b", _entry(2, 40))
    cache.put("p", "b", _entry(3, 50))  # replaced: counted once
    assert cache.head_bytes == 90
    cache.put("p", "c", _entry(4, 30))  # past 100: a goes
    assert (cache.get("p", "a"), cache.head_bytes, len(cache)) == (None, 80, 2)
    cache.put("p", "d", _entry(5, 101))  # larger than the whole cache: not kept
    assert (cache.get("p", "d"), cache.head_bytes) == (None, 80)
    cache.discard("p", "b")
    assert (cache.head_bytes, len(cache)) == (30, 1)


def test_fields_that_are_not_strings_miss_the_cache() -> None:
    cache = AcceptedStates(4, 1 << 20)
    cache.put("p", "a", _entry())
    assert cache.get(["p"], "a") is None
    assert cache.get("p", None) is None
    cache.discard("p", "a")
    assert cache.get("p", "a") is None
