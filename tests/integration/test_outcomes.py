"""The money-safe contract, rule by rule: who pays a refund, the outcome stream, expiry as an outcome.

Real daemons on the session's Redis (standalone and Cluster). Each test is named for the rule
it pins; together with tests/chaos/test_ledger.py (the randomized ledger) they cover the four
invariants of docs/recovery.md.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from drawstate import Client, DrawError, DrawState, InvalidRequest, MultiDraw, OperationClosed, StaleState
from drawstated.ops.fields import MAX_PENDING_LIMIT
from tests.support.waiting import wait_until

METADATA = {"user_id": "1001", "banner": "summer", "price_paid": "1600"}


def _events(client: Client, operation_id: str) -> list[dict[str, Any]]:
    return [item.to_dict() for item in client.iter_audit() if item.operation_id == operation_id]


def _terminal(client: Client, operation_id: str) -> list[str]:
    return [
        e["event"] for e in _events(client, operation_id) if e["event"] in ("complete", "rollback", "expire")
    ]


def _started(client: Client, lock_key: str, draws: int = 2, total: int = 10, **kwargs: Any) -> MultiDraw:
    draw = MultiDraw.start(client, lock_key, total, metadata=METADATA, **kwargs)
    for index in range(draws):
        draw.record(index + 1)
    return draw


# --- rollback: one refund decision ------------------------------------------------------


def test_a_rollback_repeated_with_its_token_gets_the_identical_answer_and_one_event(client):
    draw = _started(client, "rb:same")
    first = client.rollback(draw.lock_key, draw.operation_id, reason="crash", token="worker-a")
    assert (first.cleanup, first.final, first.existed) == ("done", True, True)
    assert first.state is not None and first.state.results == [1, 2]
    assert client.rollback(draw.lock_key, draw.operation_id, reason="crash", token="worker-a") == first
    [event] = _events(client, draw.operation_id)
    assert (event["event"], event["refunded_by_caller"], event["results"]) == ("rollback", True, [1, 2])


def test_a_second_caller_after_a_rollback_gets_operation_closed_and_must_not_refund(client):
    draw = _started(client, "rb:second")
    assert client.rollback(draw.lock_key, draw.operation_id, token="worker-a").final
    with pytest.raises(OperationClosed) as caught:
        client.rollback(draw.lock_key, draw.operation_id, token="worker-b")
    assert caught.value.details["closed_by"] == "rollback"
    with pytest.raises(OperationClosed):  # no token: the daemon makes one, so it is another caller
        client._call({"op": "rollback", "lock_key": draw.lock_key, "operation_id": draw.operation_id}, None)
    assert _terminal(client, draw.operation_id) == ["rollback"]


def test_a_rollback_of_an_operation_never_stored_is_final_with_nothing_removed_and_refuses_a_late_save(
    client, new_state
):
    state = new_state(lock_key="rb:typo")
    result = client.rollback(state.lock_key, state.operation_id, token="t1")
    assert (result.final, result.existed, result.state) == (True, False, None)
    with pytest.raises(OperationClosed):  # a save still on its way can no longer create it
        client.save(state, expect_version=0)


def test_multidraw_rollback_resends_with_one_token_and_returns_a_final_refund(client):
    draw = _started(client, "rb:session", draws=3)
    refund = draw.rollback("player cancelled")
    assert (refund.final, refund.cleanup, refund.granted_count, refund.ungranted_count) == (
        True,
        "done",
        3,
        7,
    )
    assert draw.rollback("again") is refund
    again = client.rollback(draw.lock_key, draw.operation_id, token=draw.rollback_token)
    assert again.final and again.state is not None and again.state.results == [1, 2, 3]


def test_after_a_final_rollback_no_save_complete_or_resume_succeeds_through_any_daemon(
    redis_url, make_config, start_daemon, sock_dir
):
    first = start_daemon(make_config(redis_url=redis_url))
    second = start_daemon(
        make_config(redis_url=redis_url, socket_path=sock_dir / "b.sock", data_dir=sock_dir / "b")
    )
    with first.client(timeout=5) as a, second.client(timeout=5) as b:
        draw = _started(a, "rb:hosts")
        stale = draw.state
        assert draw.rollback("refund").final
        for client in (a, b):
            with pytest.raises(OperationClosed):
                client.save(stale, expect_version=stale.version)
            with pytest.raises(OperationClosed):
                client.complete(stale.lock_key, stale.operation_id)
            assert MultiDraw.resume(client, stale.lock_key) is None


# --- immutable identity, append-only errors -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"total_count": 11}, "total_count", id="total_count"),
        pytest.param({"start_time": 1}, "start_time", id="start_time"),
        pytest.param({"metadata": {**METADATA, "price_paid": "1"}}, "metadata", id="metadata-price"),
        pytest.param({"metadata": {}}, "metadata", id="metadata-dropped"),
    ],
)
def test_a_save_that_changes_the_price_or_identity_gets_stale_state_naming_the_field(
    client, new_state, change, field
):
    state = new_state(lock_key="immutable", metadata=dict(METADATA))
    client.save(state, expect_version=0)
    changed = DrawState.from_dict({**state.to_dict(), **change})
    with pytest.raises(StaleState) as caught:
        client.save(changed, expect_version=1)
    assert caught.value.details == {"field": field}


def test_metadata_resent_in_another_key_order_is_the_same_price(client, new_state):
    state = new_state(lock_key="immutable:order", metadata={"b": "2", "a": "1"})
    client.save(state, expect_version=0)
    state.metadata = {"a": "1", "b": "2"}
    state.completed_count, state.results = 1, [7]
    assert client.save(state, expect_version=1).version == 2


def test_failed_draws_are_append_only_like_results(client, new_state):
    state = new_state(lock_key="errors:append")
    now = int(time.time())
    state.errors = [_error(1, now)]
    client.save(state, expect_version=0)
    state.completed_count, state.results = 1, [5]
    assert client.save(state, expect_version=1).version == 2  # a granted draw after the failed one
    rewritten = state.copy()
    rewritten.errors = [_error(1, now + 1)]
    rewritten.completed_count, rewritten.results = 2, [5, 6]
    with pytest.raises(StaleState) as caught:
        client.save(rewritten, expect_version=2)
    assert caught.value.details == {"field": "errors"}
    dropped = state.copy()
    dropped.errors, dropped.completed_count, dropped.results = [], 2, [5, 6]
    with pytest.raises(StaleState):
        client.save(dropped, expect_version=2)


def test_a_save_may_not_mark_a_granted_draw_failed(client, new_state):
    """Draws 1-3 were granted; a failure numbered 2 would refund one and shift results 2-3 to 3-4."""
    state = new_state(lock_key="errors:renumber")
    now = int(time.time())
    state.completed_count, state.results = 3, [11, 12, 13]
    client.save(state, expect_version=0)
    relabelled = state.copy()
    relabelled.errors = [_error(2, now)]
    with pytest.raises(StaleState) as caught:
        client.save(relabelled, expect_version=1)
    assert caught.value.details == {"field": "errors"}
    assert client.load(state.lock_key, state.operation_id).errors == []
    appended = state.copy()
    appended.errors = [_error(4, now)]  # the fourth draw failed: the next number
    assert client.save(appended, expect_version=1).version == 2


def test_a_failure_appended_after_earlier_failures_is_numbered_after_every_draw(client, new_state):
    """Draw 1 granted, 2 failed, 3 granted: a new failure is 4 or later, never 3."""
    state = new_state(lock_key="errors:after")
    now = int(time.time())
    state.completed_count, state.results, state.errors = 2, [21, 23], [_error(2, now)]
    client.save(state, expect_version=0)
    relabelled = state.copy()
    relabelled.errors = [_error(2, now), _error(3, now)]  # 3 was granted (result 23)
    with pytest.raises(StaleState) as caught:
        client.save(relabelled, expect_version=1)
    assert caught.value.details == {"field": "errors"}
    appended = state.copy()
    appended.errors = [_error(2, now), _error(4, now)]
    assert client.save(appended, expect_version=1).version == 2


def _error(index: int, at: int) -> DrawError:
    return DrawError(index, "inventory timed out", at)


# --- the outcome stream and its consumer groups -------------------------------------------


def test_every_ending_writes_exactly_one_terminal_event(client):
    done = _started(client, "end:complete", draws=2, total=2)
    done.complete()
    rolled = _started(client, "end:rollback")
    rolled.rollback("cancel")
    assert _terminal(client, done.operation_id) == ["complete"]
    assert _terminal(client, rolled.operation_id) == ["rollback"]
    client.complete(done.lock_key, done.operation_id)  # a repeat adds nothing
    assert _terminal(client, done.operation_id) == ["complete"]


def test_outcomes_gives_each_event_to_one_consumer_and_redelivers_it_until_acked(client):
    for i in range(3):
        _started(client, f"group:{i}", draws=1, total=1).complete()
    first = client.outcomes("refunds", "worker-1", limit=2)
    second = client.outcomes("refunds", "worker-2", limit=10)
    assert len(first) == 2 and len(second) == 1
    assert not {e.id for e in first} & {e.id for e in second}
    again = client.outcomes("refunds", "worker-1", limit=10)  # not acknowledged: they come back first
    assert [e.id for e in again] == [e.id for e in first]
    assert client.ack("refunds", [e.id for e in first]) == 2
    assert client.ack("refunds", [e.id for e in first]) == 0
    assert client.outcomes("refunds", "worker-1") == []


def test_claim_idle_takes_over_events_a_dead_consumer_left_unacknowledged(client):
    _started(client, "claim:1", draws=1, total=1).complete()
    [left] = client.outcomes("refunds", "dead-worker")
    assert client.outcomes("refunds", "live-worker") == []
    wait_until(lambda: client.outcomes("refunds", "live-worker", claim_idle_ms=50), timeout=5)
    [taken] = client.outcomes("refunds", "live-worker")  # now pending for the live worker
    assert taken.id == left.id


def test_block_ms_waits_for_the_next_event(client, daemon):
    assert client.outcomes("refunds", "w") == []
    with daemon.client(timeout=5) as other:
        done = _started(other, "block:1", draws=1, total=1)

        started = time.monotonic()
        done.complete()
        events = client.outcomes("refunds", "w", block_ms=3000, timeout=5)
    assert [e.operation_id for e in events] == [done.operation_id]
    assert time.monotonic() - started < 3


def test_iter_outcomes_acknowledges_only_after_the_handler_returns(client):
    _started(client, "iter:1", draws=1, total=1).complete()
    events = client.iter_outcomes("refunds", "w", block_ms=50, stop_when_idle=True)
    first = next(events)
    events.close()  # the handler never returned: not acknowledged
    assert [e.id for e in client.outcomes("refunds", "w")] == [first.id]
    assert [e.id for e in client.iter_outcomes("refunds", "w", block_ms=50, stop_when_idle=True)] == [
        first.id
    ]
    assert client.outcomes("refunds", "w") == []


def test_outcome_event_carries_what_a_refund_needs(client):
    draw = MultiDraw.start(client, "event:shape", 5, metadata=METADATA)
    draw.record(3)
    draw.record(TimeoutError("rng"))
    draw.record(4)
    draw.rollback("support ticket 7")
    [event] = client.outcomes("refunds", "w")
    assert (event.event, event.refunded_by_caller, event.deferred) == ("rollback", True, False)
    assert (event.completed_count, event.total_count, event.failed_draws, event.results) == (
        2,
        5,
        (2,),
        (3, 4),
    )
    assert (event.ungranted_count, event.metadata, event.reason) == (3, METADATA, "support ticket 7")
    assert not event.refund_owed  # its caller paid


@pytest.mark.parametrize(
    "request_fields",
    [
        pytest.param({"group": "", "consumer": "w"}, id="empty-group"),
        pytest.param({"group": "g g", "consumer": "w"}, id="space-in-group"),
        pytest.param({"group": "g"}, id="no-consumer"),
        pytest.param({"group": "g", "consumer": "w", "limit": 0}, id="limit-0"),
        pytest.param({"group": "g", "consumer": "w", "claim_idle_ms": 0}, id="claim-idle-0"),
    ],
)
def test_bad_outcomes_requests_are_invalid_requests(client, request_fields):
    with pytest.raises(InvalidRequest):
        client._call({"op": "outcomes", **request_fields}, None)


def test_outcomes_takes_a_limit_up_to_its_maximum_and_answers_invalid_request_above_it(client):
    for i in range(3):
        _started(client, f"limit:{i}", draws=1, total=1).complete()
    assert len(client.outcomes("refunds", "w", limit=MAX_PENDING_LIMIT)) == 3
    with pytest.raises(InvalidRequest) as caught:
        client.outcomes("refunds", "other", limit=MAX_PENDING_LIMIT + 1)
    assert caught.value.code == "invalid_request" and "limit" in str(caught.value)
    with pytest.raises(InvalidRequest):
        client._call({"op": "outcomes", "group": "refunds", "consumer": "other", "limit": 10**6}, None)
    assert client.ack("refunds", [e.id for e in client.outcomes("refunds", "w")]) == 3  # nothing else read


@pytest.mark.parametrize(
    "ids",
    [pytest.param([], id="none"), pytest.param(["nope"], id="not-an-id"), pytest.param("1-1", id="str")],
)
def test_ack_takes_only_a_list_of_stream_ids(client, ids):
    with pytest.raises(InvalidRequest):
        client._call({"op": "ack", "group": "g", "ids": ids}, None)


# --- expiry is an outcome ---------------------------------------------------------------


@pytest.fixture
def sweeping(redis_url, make_config, start_daemon):
    """A daemon that sweeps every 0.2 s."""
    return start_daemon(make_config(redis_url=redis_url, sweep_interval_s=0.2))


def test_an_operation_past_its_ttl_gets_one_expire_event_with_its_last_state_within_ttl_plus_interval(
    sweeping,
):
    with sweeping.client(timeout=5) as client:
        draw = _started(client, "ttl:1", draws=2, ttl_s=1)
        saved_at = time.monotonic()
        events = wait_until(lambda: client.outcomes("refunds", "w"), timeout=10)
        waited = time.monotonic() - saved_at
        [event] = events
        assert (event.event, event.operation_id, event.results) == ("expire", draw.operation_id, (1, 2))
        assert event.refund_owed and event.ungranted_count == 8
        assert waited < 1 + 0.2 + 1.0  # ttl + the sweep interval, and slack for a loaded machine
        assert client.load(draw.lock_key, draw.operation_id) is None
        with pytest.raises(OperationClosed) as caught:
            draw.record(3)
        assert caught.value.details["closed_by"] == "expire"
        with pytest.raises(OperationClosed):
            client.rollback(draw.lock_key, draw.operation_id, token="late")
        assert _terminal(client, draw.operation_id) == ["expire"]


def test_a_save_after_the_ttl_expires_the_operation_itself_before_any_sweep(client, daemon):
    draw = _started(client, "ttl:touch", draws=1, ttl_s=1)
    wait_until(lambda: client.load(draw.lock_key, draw.operation_id) is None, timeout=5)
    with pytest.raises(OperationClosed) as caught:
        draw.record(2)  # the save script sees the operation's time is up and ends it
    assert caught.value.details["closed_by"] == "expire"
    # On Cluster the event is written right after the refusal, by this daemon, not a sweep later.
    wait_until(lambda: _terminal(client, draw.operation_id) == ["expire"], timeout=2)


def test_a_rollback_or_complete_after_the_ttl_gets_closed_by_expire_before_any_sweep(client, daemon):
    late_rollback = _started(client, "ttl:late-rollback", draws=1, ttl_s=1)
    late_complete = _started(client, "ttl:late-complete", draws=1, total=1, ttl_s=1)
    wait_until(lambda: client.load(late_complete.lock_key, late_complete.operation_id) is None, timeout=5)
    # The sweeper of this daemon is an interval (30 s) away: the closing script ends them itself.
    with pytest.raises(OperationClosed) as caught:
        client.rollback(late_rollback.lock_key, late_rollback.operation_id, token="late")
    assert caught.value.details["closed_by"] == "expire"  # this caller must not refund: the stream does
    with pytest.raises(OperationClosed) as caught:
        client.complete(late_complete.lock_key, late_complete.operation_id)
    assert caught.value.details["closed_by"] == "expire"
    for draw in (late_rollback, late_complete):
        wait_until(lambda draw=draw: _terminal(client, draw.operation_id) == ["expire"], timeout=2)


def test_several_sweeping_daemons_write_exactly_one_expire_per_operation(
    redis_url, make_config, start_daemon, sock_dir
):
    daemons = [
        start_daemon(
            make_config(
                redis_url=redis_url,
                sweep_interval_s=0.05,
                socket_path=sock_dir / f"{i}.sock",
                data_dir=sock_dir / f"data{i}",
            )
        )
        for i in range(3)
    ]
    with daemons[0].client(timeout=5) as client:
        ids = {_started(client, f"ttl:many:{i}", draws=1, ttl_s=1).operation_id for i in range(20)}
        wait_until(lambda: {e.operation_id for e in client.iter_audit() if e.event == "expire"} >= ids, 15)
        time.sleep(0.5)  # let every daemon sweep a few more times: still one event each
        expired = [e.operation_id for e in client.iter_audit() if e.event == "expire"]
    assert sorted(expired) == sorted(ids)
    print(f"expire: {len(ids)} operations, 3 sweeping daemons, {len(expired)} expire events")
