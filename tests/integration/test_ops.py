"""Every op end to end: a real daemon, a real Redis, the blocking client."""

from __future__ import annotations

import json
import time

import pytest

from drawstate import DrawError, Prize, VersionConflict
from tests.support.waiting import wait_until


def test_ping_reports_redis_up_and_daemon_version(client):
    reply = client.ping()
    assert reply.redis == "up" and reply.up
    assert reply.version


def test_first_save_is_version_one_and_each_save_bumps_it(client, new_state):
    state = new_state()
    assert client.save(state).version == 1
    assert state.version == 0  # the caller's object is not changed: the version is in the result
    state.completed_count, state.results = 1, [42]
    assert client.save(state).version == 2


def test_load_returns_exactly_what_was_saved(client, new_state):
    state = new_state(
        completed_count=2,
        results=[3, 9],
        prize_results=[Prize("gold", "Gold", 0.1, 500), Prize("bronze", "Bronze", 0.6, 10)],
        errors=[DrawError(3, "rng timeout", int(time.time()))],
    )
    version = client.save(state).version
    loaded = client.load(state.lock_key, state.operation_id)
    assert loaded is not None
    assert loaded.to_dict() == {**state.to_dict(), "version": version}


def test_load_of_missing_operation_is_none_not_an_error(client):
    assert client.load("player:none") is None
    assert client.load("player:none", "20260101_000000_deadbeef") is None


def test_state_expires_after_its_ttl(client, new_state):
    state = new_state()
    assert client.save(state, ttl_s=1).ttl_s == 1
    assert client.load(state.lock_key, state.operation_id) is not None
    wait_until(lambda: client.load(state.lock_key, state.operation_id) is None, timeout=5)
    assert client.load(state.lock_key) is None
    assert client.pending(state.lock_key).items == []


def test_state_key_ttl_is_refreshed_on_every_save(client, new_state, rdb, daemon):
    state = new_state(lock_key="ttl:refresh")
    client.save(state, ttl_s=100)
    client.save(state, ttl_s=3000)
    key = f"lottery:state:{{ttl:refresh}}:{state.operation_id}"
    grace = daemon.config.expire_grace_s  # the key outlives the operation, for the sweeper
    assert 2900 + grace < rdb.ttl(key) <= 3000 + grace
    expires_ms = json.loads(rdb.get(key))["_expires"]  # the operation's own end: now + ttl_s
    assert 2900 < expires_ms / 1000 - time.time() <= 3000


def test_index_ttl_is_extended_never_shortened(client, new_state, rdb):
    first, second = new_state(lock_key="ttl:index"), new_state(lock_key="ttl:index")
    client.save(first, ttl_s=3000)
    client.save(second, ttl_s=10)
    assert rdb.ttl("lottery:ops:{ttl:index}") > 2900


def test_load_without_id_returns_the_newest_of_two_operations(client, new_state):
    older, newer = new_state(lock_key="player:two"), new_state(lock_key="player:two")
    client.save(older)
    client.save(newer)
    loaded = client.load("player:two")
    assert loaded is not None and loaded.operation_id == newer.operation_id
    client.save(older)  # saving the older one makes it the newest
    loaded = client.load("player:two")
    assert loaded is not None and loaded.operation_id == older.operation_id


def test_colons_in_lock_keys_survive_every_op(client, new_state, rdb):
    lock_key = "game:eu-1:player:77:banner:summer"
    state = new_state(lock_key=lock_key)
    client.save(state)
    assert rdb.exists(f"lottery:state:{{{lock_key}}}:{state.operation_id}")
    assert client.load(lock_key).operation_id == state.operation_id
    assert [i.lock_key for i in client.pending(lock_key).items] == [lock_key]
    assert [i.lock_key for i in client.pending().items] == [lock_key]
    assert client.complete(lock_key, state.operation_id) is True


def test_complete_removes_the_state_and_reports_whether_it_existed(client, new_state, rdb):
    state = new_state()
    client.save(state)
    assert client.complete(state.lock_key, state.operation_id) is True
    assert client.load(state.lock_key, state.operation_id) is None
    assert client.complete(state.lock_key, state.operation_id) is True  # a repeat answers the same
    assert client.complete(state.lock_key, "20260101_000000_00000000") is False
    assert not rdb.zcard(f"lottery:ops:{{{state.lock_key}}}")


def test_rollback_returns_removed_state_for_refund(client, new_state):
    state = new_state(completed_count=3, results=[1, 2, 3])
    client.save(state)
    result = client.rollback(state.lock_key, state.operation_id, reason="player refund")
    assert result.cleanup == "done"
    assert result.state is not None
    assert result.state.results == [1, 2, 3]
    assert result.state.metadata["price_paid"] == "1600"
    assert client.load(state.lock_key, state.operation_id) is None


def test_rollback_of_unknown_operation_is_ok_with_no_state(client):
    result = client.rollback("player:9", "20260101_000000_0000abcd")
    assert result.state is None
    assert result.cleanup == "done"


def test_rollback_audit_event_is_written_once(client, new_state, rdb):
    state = new_state(completed_count=1, results=[5])
    client.save(state)
    first = client.rollback(state, reason="crash", token="refund-1")
    again = client.rollback(state, reason="crash", token="refund-1")  # a resend is not audited twice
    assert again == first and first.final
    [event] = [item.to_dict() for item in client.audit().items]
    assert (event["event"], event["operation_id"]) == ("rollback", state.operation_id)
    assert (event["completed_count"], event["results"], event["reason"]) == (1, [5], "crash")
    assert event["refunded_by_caller"] is True
    assert len(rdb.xrange("lottery:audit")) == 1


def test_pending_lists_live_operations_with_counts_and_age(client, new_state):
    state = new_state(lock_key="player:p", completed_count=4, results=[1, 2, 3, 4])
    client.save(state)
    [item] = client.pending("player:p").items
    assert (item.operation_id, item.completed_count, item.total_count, item.version) == (
        state.operation_id, 4, 10, 1,
    )  # fmt: skip
    assert item.age_s >= 0


def test_pending_older_than_filters_on_last_update_time(client, new_state):
    now = int(time.time())
    stale = new_state(lock_key="player:old", start_time=now - 900, last_update_time=now - 600)
    fresh = new_state(lock_key="player:new")
    client.save(stale)
    client.save(fresh)
    found = {i.operation_id for i in client.iter_pending(older_than_s=300)}
    assert found == {stale.operation_id}


@pytest.mark.parametrize("lock_key", [None, "player:many"], ids=["all-lock-keys", "one-lock-key"])
def test_pending_pages_through_everything_with_a_cursor(client, new_state, lock_key):
    saved = set()
    for i in range(23):
        state = new_state(lock_key=lock_key or f"player:{i}")
        client.save(state)
        saved.add(state.operation_id)
    page = client.pending(lock_key, limit=5)
    assert len(page.items) == 5 and page.cursor is not None
    seen = [item.operation_id for item in client.iter_pending(lock_key, limit=5)]
    assert sorted(seen) == sorted(saved)


def test_stats_count_requests_by_op_and_code(client, new_state):
    client.save(new_state())
    client.load("player:none")
    stats = client.stats()
    assert stats.requests["save"]["ok"] == 1
    assert stats.requests["load"]["ok"] == 1
    assert stats.redis == "up"
    assert set(stats.latency["save"]) == {"p50_ms", "p90_ms", "p99_ms", "p99.9_ms"}


def test_audit_op_reads_events_oldest_first_filtered_and_paged(client, new_state):
    states = [new_state(lock_key=f"audit:{i % 2}", completed_count=1, results=[i]) for i in range(5)]
    for state in states:
        client.save(state)
    for state in states[:4]:
        client.rollback(state, reason="test")
    client.complete(states[4].lock_key, states[4].operation_id)
    events = [event.to_dict() for event in client.iter_audit(limit=2)]
    assert [e["event"] for e in events] == ["rollback"] * 4 + ["complete"]
    assert [e["operation_id"] for e in events] == [s.operation_id for s in states]
    assert events[0]["results"] == [0] and events[0]["reason"] == "test"
    only = [event.to_dict() for event in client.iter_audit("audit:1")]
    assert [e["operation_id"] for e in only] == [states[1].operation_id, states[3].operation_id]
    assert client.audit(since=int(time.time()) + 60).items == []


def test_audit_newest_reads_the_last_events_oldest_first_and_its_cursor_follows_what_comes_next(
    client, new_state
):
    assert client.audit(newest=True).items == [] and client.audit(newest=True).cursor is None
    states = [new_state(lock_key=f"tail:{i % 2}", completed_count=1, results=[i]) for i in range(7)]
    for state in states:
        client.save(state)
        client.complete(state.lock_key, state.operation_id)
    last = client.audit(newest=True, limit=3)
    assert [e.operation_id for e in last.items] == [s.operation_id for s in states[4:]]
    assert last.cursor == last.items[-1].id  # the stream's newest id
    mine = client.audit("tail:0", newest=True, limit=2)
    assert [e.operation_id for e in mine.items] == [states[4].operation_id, states[6].operation_id]
    later = new_state(lock_key="tail:1", completed_count=1, results=[9])
    client.save(later)
    client.complete(later.lock_key, later.operation_id)
    followed = client.audit(cursor=last.cursor)
    assert [e.operation_id for e in followed.items] == [later.operation_id]


def test_a_rollback_guarded_by_a_version_that_moved_on_changes_nothing(client, new_state):
    state = new_state(completed_count=1, results=[1])
    client.save(state)
    state.completed_count, state.results = 2, [1, 2]
    client.save(state, expect_version=1)  # a game resumed it after an operator listed version 1
    with pytest.raises(VersionConflict) as caught:
        client.rollback(state.lock_key, state.operation_id, expect_version=1, refund_by="stream")
    assert caught.value.details["stored_version"] == 2
    assert client.load(state.lock_key, state.operation_id).results == [1, 2]  # untouched
    done = client.rollback(state.lock_key, state.operation_id, expect_version=2, token="guarded")
    assert (done.existed, done.final) == (True, True)
    again = client.rollback(state.lock_key, state.operation_id, expect_version=7, token="guarded")
    assert (again.existed, again.final) == (True, True)  # a repeat gets the stored answer


def test_a_rollback_refunded_by_the_stream_is_decided_once_and_never_final(client, new_state):
    """close.lua records "the stream pays" itself: its caller, and any resend of its token, are
    never told `final: true`, and the outcome event hands the refund to the stream, once."""
    state = new_state(completed_count=2, results=[3, 4])
    client.save(state)
    refund = client.rollback(state.lock_key, state.operation_id, refund_by="stream", token="by-stream")
    assert (refund.cleanup, refund.final, refund.existed) == ("done", False, True)
    assert refund.state is not None and refund.state.results == [3, 4]
    again = client.rollback(state.lock_key, state.operation_id, token="by-stream")  # now "caller"
    assert (again.final, again.existed, again.state.results) == (False, True, [3, 4])
    events = [e.to_dict() for e in client.iter_audit() if e.operation_id == state.operation_id]
    assert [(e["event"], e["refunded_by_caller"], e["results"]) for e in events] == [
        ("rollback", False, [3, 4])
    ]
