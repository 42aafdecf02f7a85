"""MultiDraw logic that needs no daemon: retries reuse their token, and local refusals.

A recording stand-in for Client counts save attempts and answers from a script,
so a retry can be seen without waiting on a real outage.
"""

from __future__ import annotations

from typing import Any

import pytest

from drawstate import (
    DrawError,
    DrawState,
    InternalError,
    MultiDraw,
    OperationClosed,
    OutcomeUnknown,
    Prize,
    RedisUnavailable,
    SidecarTimeout,
    SidecarUnavailable,
    StaleState,
    VersionConflict,
)
from drawstate import resend as resend_module
from drawstate.client import SaveResult
from drawstate.results import RollbackResult

GOLD = Prize("gold", "Gold Dragon", 0.1, 500)


class ScriptedClient:
    """Answers each save with the next scripted outcome (an exception or a version)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.saves: list[dict[str, Any]] = []

    def save(self, state: dict[str, Any], **kwargs: Any) -> SaveResult:
        self.saves.append({"state": state, **kwargs})
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return SaveResult(outcome, 3600)


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch):
    """Back-off sleeps advance a fake clock at once, so resending until the deadline takes no time."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    monkeypatch.setattr(resend_module, "_sleep", sleep)
    monkeypatch.setattr(resend_module, "_clock", lambda: now[0])
    return now


def _session(client: ScriptedClient, **fields: Any) -> MultiDraw:
    values: dict[str, Any] = {
        "lock_key": "player:1",
        "operation_id": "op_1",
        "total_count": 10,
        "start_time": 100,
        "last_update_time": 100,
        "version": 4,
    }
    values.update(fields)
    return MultiDraw(client, DrawState(**values))


def test_a_retryable_save_failure_is_retried_with_the_same_token_and_expected_version():
    client = ScriptedClient(SidecarUnavailable("restarting"), RedisUnavailable("down"), 5)
    session = _session(client)
    assert session.record(GOLD) == 1
    assert len(client.saves) == 3
    assert len({save["token"] for save in client.saves}) == 1
    assert {save["expect_version"] for save in client.saves} == {4}
    assert session.version == 5 and session.next_draw_index == 2


def test_a_save_that_may_have_applied_raises_outcome_unknown_once_the_resend_deadline_passes():
    client = ScriptedClient(*[RedisUnavailable("down")] * 100)
    session = _session(client)
    with pytest.raises(OutcomeUnknown) as caught:
        session.record(GOLD)
    assert isinstance(caught.value.__cause__, RedisUnavailable)
    assert 3 <= len(client.saves) < 100  # resent while the deadline lasted, then stopped
    assert len({save["token"] for save in client.saves}) == 1
    assert session.next_draw_index == 1 and session.version == 4  # in doubt: not counted as recorded


def test_a_save_that_never_reached_the_daemon_raises_its_own_error_not_outcome_unknown():
    client = ScriptedClient(*[SidecarUnavailable("no socket")] * 100)
    session = _session(client)
    with pytest.raises(SidecarUnavailable) as caught:
        session.record(GOLD)
    assert not isinstance(caught.value, OutcomeUnknown)


def test_one_lost_reply_among_refused_attempts_still_makes_the_outcome_unknown():
    client = ScriptedClient(SidecarTimeout("no reply"), *[SidecarUnavailable("restarting")] * 100)
    with pytest.raises(OutcomeUnknown):
        _session(client).record(GOLD)


def test_an_internal_error_leaves_the_draw_in_doubt_and_recording_it_again_resends_the_same_save():
    """`internal` comes after the daemon took the save: Redis may have applied it, so not "not recorded"."""
    client = ScriptedClient(InternalError("the daemon failed"), 5)
    session = _session(client)
    with pytest.raises(OutcomeUnknown) as caught:
        session.record(GOLD)
    assert isinstance(caught.value.__cause__, InternalError)
    assert len(client.saves) == 1 and session.version == 4
    assert session.record(GOLD) == 1  # the same draw again: the same save, the same token
    assert client.saves[0]["token"] == client.saves[1]["token"]
    assert session.version == 5


def test_recording_the_same_draw_after_a_failed_save_resends_that_save_with_its_token():
    client = ScriptedClient(*[RedisUnavailable("down")] * 100)
    session = _session(client)
    with pytest.raises(OutcomeUnknown):
        session.record(GOLD)
    assert session.next_draw_index == 1 and session.version == 4  # not recorded
    client.outcomes = [5]
    session.record(GOLD)  # the same draw again: it may have been applied, so the same save
    first, last = client.saves[0], client.saves[-1]
    assert last["token"] == first["token"] and last["state"] == first["state"]
    assert session.state.prize_results == [GOLD]


def test_a_different_draw_after_a_failed_save_gets_a_new_token():
    client = ScriptedClient(*[RedisUnavailable("down")] * 100)
    session = _session(client)
    with pytest.raises(OutcomeUnknown):
        session.record(GOLD)
    client.outcomes = [5]
    session.record(7)
    assert client.saves[-1]["token"] != client.saves[0]["token"]


def test_a_non_retryable_error_is_not_retried_and_a_conflict_marks_the_session_lost():
    client = ScriptedClient(StaleState("moved on"))
    session = _session(client)
    with pytest.raises(StaleState):
        session.record(GOLD)
    assert len(client.saves) == 1 and not session.lost
    client.outcomes.append(VersionConflict("someone else", details={"stored_version": 6}))
    with pytest.raises(VersionConflict):
        session.record(GOLD)
    assert session.lost
    with pytest.raises(VersionConflict) as caught:
        session.rollback("mine?")  # refused locally: nothing is sent
    assert caught.value.details == {"stored_version": 6}
    assert len(client.saves) == 2


def test_record_refuses_past_total_count_and_odd_results_without_saving():
    client = ScriptedClient()
    finished = _session(client, total_count=2, completed_count=1, errors=[DrawError(2, "x", 100)])
    with pytest.raises(ValueError, match="all 2 draws"):
        finished.record(GOLD)
    session = _session(client)
    with pytest.raises(TypeError):
        session.record(True)
    with pytest.raises(TypeError):
        session.record("gold")
    with pytest.raises(ValueError, match="next draw is 1"):
        session.record(DrawError(3, "wrong index", 100))
    assert client.saves == []


def test_a_failed_draw_records_the_exception_as_a_draw_error_at_its_index():
    client = ScriptedClient(5)
    session = _session(client, completed_count=2, results=[1, 2])
    assert session.record(TimeoutError("rng timed out")) == 3
    [error] = session.state.errors
    assert error.draw_index == 3 and error.error_message == "TimeoutError: rng timed out"
    assert session.next_draw_index == 4 and session.remaining == 7


def test_on_error_must_be_keep_or_rollback():
    with pytest.raises(ValueError, match="on_error"):
        MultiDraw(ScriptedClient(), DrawState("p", "o", 1), on_error="ignore")


def test_state_is_a_copy_that_cannot_change_the_session():
    session = _session(ScriptedClient())
    session.state.results.append(99)
    session.state.metadata["x"] = "y"
    assert session.state.results == [] and session.state.metadata == {}


class ScriptedRollbacks:
    """Answers each rollback with the next scripted outcome (an exception or a RollbackResult)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.tokens: list[str] = []

    def rollback(self, state: Any, **kwargs: Any) -> RollbackResult:
        self.tokens.append(kwargs["token"])
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _deferred() -> RollbackResult:
    return RollbackResult(None, "deferred", final=False, existed=False, token="t")


def _done(state: DrawState | None, *, final: bool, existed: bool) -> RollbackResult:
    return RollbackResult(state, "done", final=final, existed=existed, token="t")


def test_a_first_rollback_answered_deferred_is_the_streams_to_refund():
    session = _session(ScriptedRollbacks(_deferred()))
    refund = session.rollback("test")
    assert (refund.cleanup, refund.final) == ("deferred", False)


def test_a_deferred_answer_after_an_attempt_that_may_have_applied_decides_nothing():
    # The first attempt may have been settled "this caller pays" with its answer lost; the resend
    # finds Redis unreachable. Taking "deferred" as "don't refund" would leave the refund unpaid.
    client = ScriptedRollbacks(SidecarTimeout("no reply"), *[_deferred()] * 100)
    session = _session(client)
    with pytest.raises(OutcomeUnknown):
        session.rollback("test")
    assert len(set(client.tokens)) == 1 and len(client.tokens) >= 2
    later = session.state.copy()
    client.outcomes = [_deferred(), _done(later, final=True, existed=True)]
    refund = session.rollback("test")  # a later call, Redis back: the stored decision
    assert (refund.cleanup, refund.final) == ("done", True) and len(set(client.tokens)) == 1


def test_a_rollback_resent_with_a_stored_token_never_takes_deferred_as_a_decision():
    session = _session(ScriptedRollbacks(*[_deferred()] * 100))
    with pytest.raises(OutcomeUnknown):
        session.rollback("after a crash", token="stored-token")


def test_a_deferred_answer_for_an_operation_never_stored_decides_nothing():
    session = _session(ScriptedRollbacks(*[_deferred()] * 100), version=0)
    with pytest.raises(OutcomeUnknown):
        session.rollback("start never answered")


def test_existed_false_for_an_operation_this_session_stored_is_never_refunded_here():
    # Its tombstone expired: it ended long ago and its terminal event says who refunds.
    session = _session(ScriptedRollbacks(_done(None, final=True, existed=False)))
    with pytest.raises(OperationClosed) as caught:
        session.rollback("late")
    assert caught.value.details["closed_by"] == "unknown" and session.lost


def test_existed_false_for_an_operation_never_stored_is_this_callers_refund():
    session = _session(ScriptedRollbacks(_done(None, final=True, existed=False)), version=0)
    refund = session.rollback("never stored")
    assert refund.final is True
