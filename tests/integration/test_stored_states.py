"""States as they sit in Redis: corrupted, rule-breaking, written by another engine, or re-sent reordered."""

from __future__ import annotations

import json

import pytest

from drawstate import DrawStateCorrupted, OperationClosed, StaleState
from tests.support.wire import RawPeer


@pytest.fixture
def peer(daemon):
    peer = RawPeer(daemon.config.socket_path)
    yield peer
    peer.close()


def test_corrupted_json_planted_in_redis_is_reported_not_returned(client, new_state, rdb):
    state = new_state(lock_key="player:corrupt")
    rdb.set(f"lottery:state:{{player:corrupt}}:{state.operation_id}", b'{"lock_key": "player:corr')
    rdb.zadd("lottery:ops:{player:corrupt}", {state.operation_id: 1})
    with pytest.raises(DrawStateCorrupted):
        client.load("player:corrupt", state.operation_id)
    with pytest.raises(DrawStateCorrupted):
        client.load("player:corrupt")
    with pytest.raises(DrawStateCorrupted):
        client.save(state)  # never silently overwritten
    assert client.pending("player:corrupt").items == []  # skipped, and logged


def test_rule_breaking_json_in_redis_is_corrupted(client, new_state, rdb):
    state = new_state(lock_key="player:rules")
    rdb.set(
        f"lottery:state:{{player:rules}}:{state.operation_id}",
        b'{"lock_key":"player:rules","operation_id":"%s","total_count":2,"completed_count":5,'
        b'"start_time":1,"last_update_time":1,"version":1}' % state.operation_id.encode(),
    )
    with pytest.raises(DrawStateCorrupted):
        client.load("player:rules", state.operation_id)


def test_rollback_of_corrupted_state_removes_it_and_audits_the_raw_value(client, new_state, rdb):
    key = "lottery:state:{player:c2}:20260101_000000_0000beef"
    rdb.set(key, b"not json at all")
    with pytest.raises(DrawStateCorrupted):
        client.rollback("player:c2", "20260101_000000_0000beef")
    assert not rdb.exists(key)
    [event] = [item.to_dict() for item in client.audit().items]
    assert event["corrupted_state"] == "not json at all"
    assert event["refunded_by_caller"] is False  # the caller got an error: the stream pays, by hand


def test_a_state_without_this_daemons_tail_loads_and_saves_with_every_check(client, new_state, rdb):
    """A document with no `_token`/`_expires` tail (an earlier version of this daemon, or one
    written by hand) goes through save.lua's slow path: decoded, every check still made. (The
    original engine's own documents, with no operation_id or version, are not read in place:
    `drawstate import-legacy` converts them; tests/integration/test_import_legacy.py.)"""
    state = new_state(lock_key="engine:go", completed_count=2, results=[5, 6], metadata={})
    raw = json.dumps(  # the canonical field order, a version, no save token and no expiry
        {
            "lock_key": "engine:go",
            "operation_id": state.operation_id,
            "total_count": 10,
            "completed_count": 2,
            "results": [5, 6],
            "start_time": state.start_time,
            "last_update_time": state.last_update_time,
            "version": 4,
        }
    )
    rdb.set(f"lottery:state:{{engine:go}}:{state.operation_id}", raw)
    rdb.zadd("lottery:ops:{engine:go}", {state.operation_id: 1})
    assert client.load("engine:go").version == 4
    with pytest.raises(StaleState):
        client.save(new_state(lock_key="engine:go", operation_id=state.operation_id, completed_count=3,
                              results=[5, 7, 8], metadata={}))  # fmt: skip
    state.completed_count, state.results = 3, [5, 6, 7]
    assert client.save(state, expect_version=4).version == 5


def test_prizes_resent_with_another_key_order_are_not_a_rewrite(peer, new_state):
    state = new_state(lock_key="order:keys").to_dict()
    first = {"id": "gold", "name": "Gold", "probability": 0.1, "value": 500}
    state.update(completed_count=1, prize_results=[first])
    assert peer.request({"id": 1, "op": "save", "state": state})["ok"]
    reordered = {"value": 500, "probability": 0.1, "name": "Gold", "id": "gold"}
    second = {"id": "silver", "name": "Silver", "probability": 0.3, "value": 50}
    state.update(completed_count=2, prize_results=[reordered, second])
    assert peer.request({"id": 2, "op": "save", "state": state})["ok"]
    state.update(completed_count=3, prize_results=[reordered, {**second, "value": 51}, second])
    reply = peer.request({"id": 3, "op": "save", "state": state})
    assert reply["error"]["code"] == "stale_state"


def test_a_rollback_meeting_a_tombstone_of_the_version_before_tokens_gets_that_versions_answer(
    client, new_state, rdb
):
    """That version's tombstone was a string, "<kind>\n<body>", and told every rollback's caller to
    refund, with no token to tell them apart. While such tombstones live, a rollback gets that answer
    again, the state it removed included, but one asking the stream to pay is told it does not."""
    state = new_state(lock_key="legacy:tomb", completed_count=1, results=[4])
    operation_id = state.operation_id
    rdb.set(f"lottery:closed:{{legacy:tomb}}:{operation_id}", "rollback\n" + json.dumps(state.to_dict()))
    by_caller = client.rollback("legacy:tomb", operation_id, token="legacy-a")
    assert (by_caller.final, by_caller.existed, by_caller.cleanup) == (True, True, "done")
    assert by_caller.state is not None and by_caller.state.results == [4]
    by_stream = client.rollback("legacy:tomb", operation_id, token="legacy-b", refund_by="stream")
    assert (by_stream.final, by_stream.existed) == (False, True)
    with pytest.raises(OperationClosed) as closed:
        client.complete("legacy:tomb", operation_id)
    assert closed.value.details["closed_by"] == "rollback"
