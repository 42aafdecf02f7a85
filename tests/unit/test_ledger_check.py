"""The ledger test's verdict on hand-made ledgers: each broken invariant is named, a clean run passes."""

from __future__ import annotations

from typing import Any

from tests.chaos.ledger_check import check


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


START = [{"k": "start", "op": "op", "lock": "p", "total": 5}]


def test_a_rollback_refunded_by_the_stream_with_its_draws_granted_passes():
    verdict = check(START + _grants((1, 10), (3, 30)), [_ending()], {"op": 3}, [])
    assert verdict.violations == []
    assert verdict.counts["draws refunded"] == 3


def test_an_inline_refund_and_a_stream_refund_of_one_operation_is_a_double_refund():
    inline = [{"k": "rollback", "op": "op", "token": "t", "final": True, "draws": 3}]
    verdict = check(START + inline, [_ending(refunded_by_caller=True)], {"op": 3}, [])
    assert any("invariant 2" in v and "inline and from the stream" in v for v in verdict.violations)


def test_two_callers_told_to_refund_is_caught():
    inline = [
        {"k": "rollback", "op": "op", "token": token, "final": True, "draws": 3} for token in ("t1", "t2")
    ]
    verdict = check(START + inline, [_ending(refunded_by_caller=True)], {}, [])
    assert any("2 callers told to refund" in v for v in verdict.violations)


def test_a_grant_of_a_draw_the_final_state_does_not_hold_is_caught():
    verdict = check(START + _grants((4, 40)), [_ending()], {"op": 3}, [])
    assert any("draw 4 granted but not in the final state" in v for v in verdict.violations)


def test_a_refund_nobody_paid_is_caught():
    verdict = check(START, [_ending()], {}, [])
    assert any("3 draws owed a refund, 0 refunded" in v for v in verdict.violations)


def test_an_operation_without_an_ending_or_with_two_different_ones_is_caught():
    assert any("no terminal event" in v for v in check(START, [], {}, []).violations)
    two = check(START, [_ending(), _ending("expire", id="2-0")], {"op": 3}, [])
    assert any("different endings" in v for v in two.violations)


def test_an_ending_written_twice_identically_is_one_ending():
    verdict = check(START, [_ending(), _ending(id="2-0")], {"op": 3}, [])
    assert verdict.violations == []
    assert verdict.counts["terminal events written twice (identical)"] == 1


def test_a_state_left_in_redis_after_its_ending_is_caught():
    verdict = check(START, [_ending()], {"op": 3}, ["op"])
    assert any("invariant 4" in v for v in verdict.violations)
