"""The ledger test's verdict on hand-made ledgers: each broken invariant is named, a clean run passes."""

from __future__ import annotations

from typing import Any

from tests.chaos.ledger_check import MONEY_PATHS, Grant, check


def _ending(event: str = "rollback", **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": "1-0", "event": event, "operation_id": "op", "lock_key": "p", "existed": True,
        "refunded_by_caller": False, "deferred": False, "completed_count": 2, "total_count": 5,
        "failed_draws": [2], "results": [10, 30],
    }  # fmt: skip
    values.update(fields)
    return values


def _grants(*pairs: tuple[int, int]) -> list[dict[str, Any]]:
    return [{"k": "grant", "op": "op", "idx": index, "r": value} for index, value in pairs]


def _rows(*pairs: tuple[int, int], by: str = "game-a0") -> list[Grant]:
    """Rows of the grants table, as the backend holds them."""
    return [Grant("op", index, value, by) for index, value in pairs]


START = [{"k": "start", "op": "op", "lock": "p", "total": 5}]
#: The grants table of a run where the game granted both results of `_ending()`.
GRANTED = _rows((1, 10), (3, 30))


def test_a_rollback_refunded_by_the_stream_with_its_draws_granted_passes():
    verdict = check(START + _grants((1, 10), (3, 30)), [_ending()], {"op": 3}, [], grants=GRANTED)
    assert verdict.violations == []
    assert verdict.counts["draws refunded"] == 3


def test_an_inline_refund_and_a_stream_refund_of_one_operation_is_a_double_refund():
    inline = [{"k": "rollback", "op": "op", "token": "t", "final": True, "draws": 3}]
    verdict = check(START + inline, [_ending(refunded_by_caller=True)], {"op": 3}, [], grants=GRANTED)
    assert any("invariant 2" in v and "inline and from the stream" in v for v in verdict.violations)


def test_a_rollback_that_left_its_refund_to_the_stream_is_counted_and_never_final():
    asked = {"k": "rollback", "op": "op", "token": "t", "draws": 3, "by": "stream"}
    left = check([*START, {**asked, "final": False}], [_ending()], {"op": 3}, [], grants=GRANTED)
    assert left.violations == [] and left.counts["rollbacks left to the stream"] == 1
    paid = _ending(refunded_by_caller=True)
    told = check([*START, {**asked, "final": True}], [paid], {}, [], grants=GRANTED)
    assert any("leaving its refund to the stream was told to pay" in v for v in told.violations)


def test_two_callers_told_to_refund_is_caught():
    inline = [
        {"k": "rollback", "op": "op", "token": token, "final": True, "draws": 3} for token in ("t1", "t2")
    ]
    verdict = check(START + inline, [_ending(refunded_by_caller=True)], {}, [], grants=GRANTED)
    assert any("2 callers told to refund" in v for v in verdict.violations)


def test_a_grant_of_a_draw_the_final_state_does_not_hold_is_caught():
    verdict = check(START + _grants((4, 40)), [_ending()], {"op": 3}, [], grants=GRANTED)
    assert any("draw 4 granted but not in the final state" in v for v in verdict.violations)


def test_a_refund_nobody_paid_is_caught():
    verdict = check(START, [_ending()], {}, [], grants=GRANTED)
    assert any("3 draws owed a refund, 0 refunded" in v for v in verdict.violations)


def test_an_operation_without_an_ending_or_with_two_different_ones_is_caught():
    assert any("no terminal event" in v for v in check(START, [], {}, [], grants=[]).violations)
    two = check(START, [_ending(), _ending("expire", id="2-0")], {"op": 3}, [], grants=GRANTED)
    assert any("different endings" in v for v in two.violations)


def test_an_ending_written_twice_identically_is_one_ending():
    verdict = check(START, [_ending(), _ending(id="2-0")], {"op": 3}, [], grants=GRANTED)
    assert verdict.violations == []
    assert verdict.counts["terminal events written twice (identical)"] == 1


def test_a_state_left_in_redis_after_its_ending_is_caught():
    verdict = check(START, [_ending()], {"op": 3}, ["op"], grants=GRANTED)
    assert any("invariant 4" in v for v in verdict.violations)


def test_a_saved_draw_nobody_granted_is_caught_though_it_is_in_the_final_state():
    verdict = check(START + _grants((1, 10)), [_ending("expire")], {"op": 3}, [], grants=_rows((1, 10)))
    assert any("draw 3 is in the final state; nobody granted it" in v for v in verdict.violations)


def test_the_refund_worker_granting_the_draw_a_game_left_in_doubt_passes():
    in_doubt = [{"k": "in-doubt", "op": "op", "idx": 3, "r": 30}]
    rows = _rows((1, 10)) + _rows((3, 30), by="refund-worker:w1")
    verdict = check(START + _grants((1, 10)) + in_doubt, [_ending("expire")], {"op": 3}, [], grants=rows)
    assert verdict.violations == []
    assert verdict.counts["draws granted by the refund worker"] == 1
    assert verdict.counts["in-doubt records"] == 1


def test_a_draw_granted_by_the_game_and_again_by_the_worker_is_caught():
    granted_by_game = [{"k": "grant", "op": "op", "idx": 1, "r": 10, "new": True, "by": "game-a0"}]
    rows = _rows((1, 10), by="refund-worker:w1") + _rows((3, 30))  # the worker overwrote the game's row
    verdict = check(START + granted_by_game, [_ending("expire")], {"op": 3}, [], grants=rows)
    assert any("draw 1 granted twice" in v for v in verdict.violations)


def test_a_grant_with_another_result_than_the_one_saved_is_caught():
    verdict = check(START, [_ending()], {"op": 3}, [], grants=_rows((1, 10), (3, 31)))
    assert any("draw 3 granted as 31, saved as 30" in v for v in verdict.violations)


def test_the_refund_worker_granting_draws_of_an_ending_the_game_settled_is_caught():
    complete = _ending("complete", completed_count=2, total_count=3)  # draw 2 failed: refunded by the stream
    rows = _rows((1, 10)) + _rows((3, 30), by="refund-worker:w1")
    verdict = check(START, [complete], {"op": 1}, [], grants=rows)
    assert any("the refund worker granted draw 3 of a complete" in v for v in verdict.violations)


def test_refunds_that_do_not_cover_exactly_the_draws_not_granted_are_caught():
    verdict = check(START, [_ending()], {"op": 2}, [], grants=GRANTED)
    assert any("2 granted + 2 refunded of 5 paid" in v for v in verdict.violations)


def test_an_unreadable_ending_must_be_parked_for_a_person_and_nothing_else():
    unreadable = {"id": "1-0", "event": "rollback", "operation_id": "op", "lock_key": "p", "existed": True,
                  "refunded_by_caller": False, "deferred": False, "corrupted_state": "not json"}  # fmt: skip
    parked = check([], [unreadable], {}, [], grants=[], parked=["op"])
    assert parked.violations == []
    assert parked.counts["refunds parked for a person"] == 1
    skipped = check([], [unreadable], {}, [], grants=[])
    assert any("nobody parked its refund" in v for v in skipped.violations)


def test_every_money_path_is_counted_even_when_the_run_never_took_it():
    verdict = check(START, [_ending("complete", completed_count=2, total_count=2, failed_draws=[])], {}, [],
                    grants=_rows((1, 10), (2, 30)))  # fmt: skip
    assert verdict.violations == []
    assert {name: verdict.counts[name] for name in MONEY_PATHS} == dict.fromkeys(MONEY_PATHS, 0)
    assert set(MONEY_PATHS) <= set(verdict.counts)
