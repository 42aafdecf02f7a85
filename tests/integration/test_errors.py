"""Every error code that can be provoked, and every DrawState rule, checked by the daemon itself.

The raw peer sends what the Client would refuse to send, so the daemon's own
validation is what answers.
"""

from __future__ import annotations

import struct
import time

import pytest

from drawstate import (
    DurabilityNotMet,
    InvalidDrawState,
    InvalidRequest,
    OperationClosed,
    StaleState,
    VersionConflict,
)
from tests.support.shared_redis import CLUSTER_PREFIX
from tests.support.wire import RawPeer


def _state(**changes):
    now = int(time.time())
    state = {
        "lock_key": "player:1",
        "operation_id": "20260101_000000_abcdef01",
        "total_count": 10,
        "completed_count": 1,
        "results": [4],
        "start_time": now,
        "last_update_time": now,
    }
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


@pytest.fixture
def peer(daemon):
    peer = RawPeer(daemon.config.socket_path)
    yield peer
    peer.close()


def _error(reply):
    assert reply["ok"] is False, reply
    return reply["error"]


BROKEN_STATES = {
    "lock-key-empty": _state(lock_key=""),
    "lock-key-brace": _state(lock_key="a{b}"),
    "lock-key-too-long": _state(lock_key="k" * 201),
    "lock-key-control-char": _state(lock_key="a\nb"),
    "operation-id-slash": _state(operation_id="../etc/passwd"),
    "operation-id-too-long": _state(operation_id="a" * 65),
    "total-zero": _state(total_count=0, completed_count=0, results=[]),
    "total-over-max": _state(total_count=10_001),
    "completed-over-total": _state(completed_count=11),
    "completed-negative": _state(completed_count=-1, results=[]),
    "results-longer-than-completed": _state(results=[1, 2]),
    "prizes-longer-than-completed": _state(
        prize_results=[{"id": "a", "name": "", "probability": 0.1, "value": 1}] * 2
    ),
    "prize-probability-over-one": _state(
        prize_results=[{"id": "a", "name": "", "probability": 1.5, "value": 1}]
    ),
    "prize-probability-nan": _state(
        prize_results=[{"id": "a", "name": "", "probability": float("nan"), "value": 1}]
    ),
    "prize-empty-id": _state(prize_results=[{"id": "", "name": "", "probability": 0.1, "value": 1}]),
    "errors-overflow-total": _state(
        total_count=2,
        completed_count=2,
        results=[1, 2],
        errors=[{"draw_index": 1, "error_message": "x", "timestamp": 1}],
    ),
    "error-index-zero": _state(errors=[{"draw_index": 0, "error_message": "x", "timestamp": 1}]),
    "start-time-zero": _state(start_time=0, last_update_time=0),
    "last-update-before-start": _state(start_time=100, last_update_time=99),
    "metadata-too-many": _state(metadata={f"k{i}": "v" for i in range(33)}),
    "metadata-non-string": _state(metadata={"price": 100}),
    "bool-as-int": _state(total_count=True),
    "result-not-int": _state(results=["4"]),
    "unknown-field": _state(color="red"),
    "missing-field": _state(start_time=None),
}


@pytest.mark.parametrize("state", BROKEN_STATES.values(), ids=BROKEN_STATES.keys())
def test_daemon_refuses_every_broken_state_as_corrupted(peer, state):
    error = _error(peer.request({"id": 1, "op": "save", "state": state}))
    assert error["code"] == "draw_state_corrupted"
    assert error["retryable"] is False


def test_state_over_size_cap_is_invalid_request_not_truncated(make_config, redis_url, start_daemon):
    from drawstate import Limits

    daemon = start_daemon(make_config(redis_url=redis_url, limits=Limits(max_state_bytes=2048)))
    peer = RawPeer(daemon.config.socket_path)
    error = _error(
        peer.request(
            {"id": 1, "op": "save", "state": _state(metadata={"blob": "x" * 1000, "more": "y" * 1000})}
        )
    )
    assert error["code"] == "invalid_request"
    assert "cap" in error["message"]
    peer.close()


@pytest.mark.parametrize(
    "request_",
    [
        {"id": 1, "op": "fly"},
        {"id": 1},
        {"id": 1, "op": "load"},
        {"id": 1, "op": "load", "lock_key": 5},
        {"id": 1, "op": "load", "lock_key": "k", "operation_id": "a b"},
        {"id": 1, "op": "save"},
        {"id": 1, "op": "save", "state": _state(), "token": "bad token!"},
        {"id": 1, "op": "save", "state": _state(), "expect_version": -1},
        {"id": 1, "op": "save", "state": _state(), "ttl_s": 0},
        {"id": 1, "op": "save", "state": _state(), "durability": "eventually"},
        {"id": 1, "op": "complete", "lock_key": "k"},
        {"id": 1, "op": "pending", "limit": 1001},
        {"id": 1, "op": "pending", "cursor": "not-a-cursor"},
        {"id": 1, "op": "ping", "deadline_ms": 0},
        {"id": 1, "op": "rollback", "lock_key": "k", "operation_id": "x", "reason": "r" * 600},
    ],
    ids=[
        "unknown-op", "missing-op", "load-without-lock-key", "lock-key-not-string", "bad-operation-id",
        "save-without-state", "bad-token", "negative-expect-version", "zero-ttl", "unknown-durability",
        "complete-without-id", "pending-limit-too-big", "pending-bad-cursor", "zero-deadline",
        "reason-too-long",
    ],
)  # fmt: skip
def test_malformed_requests_get_invalid_request_naming_the_problem(peer, request_):
    error = _error(peer.request(request_))
    assert error["code"] == "invalid_request"
    assert error["message"]


@pytest.mark.parametrize(
    "frame",
    [[1, 2, 3], "ping", {"op": "ping"}, {"id": "7", "op": "ping"}, {"id": -1, "op": "ping"}],
    ids=["array", "string", "no-id", "string-id", "negative-id"],
)
def test_frame_without_usable_id_is_answered_with_nil_id(peer, frame):
    peer.send(frame)
    reply = peer.read()
    assert reply["id"] is None
    assert _error(reply)["code"] == "invalid_request"
    assert peer.request({"id": 2, "op": "ping"})["ok"] is True  # the connection still works


def test_garbage_body_is_invalid_request_and_connection_survives(peer):
    peer.send_raw(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
    assert _error(peer.read())["code"] == "invalid_request"
    assert peer.request({"id": 2, "op": "ping"})["ok"] is True


def test_oversized_declared_frame_gets_frame_too_large_and_close(peer):
    peer.send_raw(struct.pack(">I", 2 * 1024 * 1024))
    reply = peer.read()
    assert reply["id"] is None
    assert _error(reply)["code"] == "frame_too_large"
    assert peer.closed_by_peer()


def test_version_conflict_carries_the_stored_version(client, new_state):
    state = new_state()
    client.save(state, expect_version=0)
    with pytest.raises(VersionConflict) as caught:
        client.save(state, expect_version=0)  # create-only, but it exists
    assert caught.value.details["stored_version"] == 1
    assert not caught.value.retryable
    with pytest.raises(VersionConflict):
        client.save(state, expect_version=5)
    assert client.save(state, expect_version=1).version == 2


def test_expect_version_on_missing_state_is_a_conflict(client, new_state):
    with pytest.raises(VersionConflict) as caught:
        client.save(new_state(), expect_version=3)
    assert caught.value.details["stored_version"] == 0


def test_progress_going_backwards_is_stale_state(client, new_state):
    state = new_state(completed_count=3, results=[1, 2, 3])
    client.save(state)
    behind = new_state(operation_id=state.operation_id, completed_count=2, results=[1, 2])
    with pytest.raises(StaleState) as caught:
        client.save(behind)
    assert caught.value.details["field"] == "completed_count"


def test_lower_completed_count_with_the_same_draws_is_stale_state(client, new_state):
    from drawstate import Prize

    # Nothing else moves backwards: only the count check can refuse it.
    prize = Prize("gold", "Gold", 0.1, 500)
    state = new_state(completed_count=3, results=[1, 2], prize_results=[prize])
    client.save(state)
    behind = new_state(operation_id=state.operation_id, completed_count=2, results=[1, 2],
                       prize_results=[prize], last_update_time=state.last_update_time + 1)  # fmt: skip
    with pytest.raises(StaleState) as caught:
        client.save(behind)
    assert caught.value.details["field"] == "completed_count"
    assert client.load(state.lock_key, state.operation_id).completed_count == 3


def test_rewriting_a_recorded_draw_is_stale_state(client, new_state):
    state = new_state(completed_count=2, results=[1, 2])
    client.save(state)
    state.completed_count, state.results = 3, [1, 99, 3]
    with pytest.raises(StaleState) as caught:
        client.save(state)
    assert caught.value.details["field"] == "results"


def test_rewriting_a_recorded_prize_is_stale_state(client, new_state):
    from drawstate import Prize

    state = new_state(completed_count=1, prize_results=[Prize("gold", "Gold", 0.1, 500)])
    client.save(state)
    state.completed_count, state.prize_results = 2, [Prize("silver", "Silver", 0.3, 50)] * 2
    with pytest.raises(StaleState) as caught:
        client.save(state)
    assert caught.value.details["field"] == "prize_results"


def test_save_after_rollback_is_operation_closed(client, new_state):
    state = new_state()
    client.save(state)
    client.rollback(state)
    with pytest.raises(OperationClosed):
        client.save(state)


def test_complete_after_rollback_and_rollback_after_complete_are_refused(client, new_state):
    rolled, completed = new_state(), new_state()
    client.save(rolled)
    client.save(completed)
    client.rollback(rolled)
    client.complete(completed.lock_key, completed.operation_id)
    with pytest.raises(OperationClosed) as caught:
        client.complete(rolled.lock_key, rolled.operation_id)
    assert caught.value.details["closed_by"] == "rollback"
    with pytest.raises(OperationClosed) as caught:
        client.rollback(completed.lock_key, completed.operation_id)
    assert caught.value.details["closed_by"] == "complete"


def test_replicated_save_without_replicas_is_durability_not_met(client, new_state, redis_url):
    if redis_url.startswith(CLUSTER_PREFIX):
        pytest.skip("every master of the test cluster has a replica; see test_sentinel and test_cluster")
    state = new_state()
    with pytest.raises(DurabilityNotMet) as caught:
        client.save(state, durability="replicated", timeout=1.0)
    assert caught.value.retryable
    assert caught.value.details["replicas"] == 0
    assert client.load(state.lock_key, state.operation_id).version == 1  # written, not replicated


def test_connection_over_the_limit_gets_overloaded_then_close(make_config, redis_url, start_daemon):
    daemon = start_daemon(make_config(redis_url=redis_url, max_connections=2))
    held = [RawPeer(daemon.config.socket_path) for _ in range(2)]
    for peer in held:
        assert peer.request({"id": 1, "op": "ping"})["ok"]
    extra = RawPeer(daemon.config.socket_path)
    reply = extra.read()
    assert reply["id"] is None
    assert reply["error"] == {
        "code": "overloaded", "message": "connection limit (2) reached", "retryable": True,
    }  # fmt: skip
    assert extra.closed_by_peer()
    for peer in [*held, extra]:
        peer.close()


def test_a_broken_state_from_the_client_is_refused_by_the_daemon(client, new_state):
    state = new_state(completed_count=20)
    with pytest.raises(InvalidDrawState) as caught:  # the caller's mistake: a ValueError, not stored data
        client.save(state)
    assert "completed_count" in str(caught.value) and isinstance(caught.value, ValueError)
    assert caught.value.details["source"] == "request"
    assert client.stats().requests["save"] == {"draw_state_corrupted": 1}


def test_peer_not_on_the_allow_list_is_refused_clearly(make_config, redis_url, start_daemon):
    import os

    daemon = start_daemon(make_config(redis_url=redis_url, allowed_uids=frozenset({os.getuid() + 1})))
    peer = RawPeer(daemon.config.socket_path)
    error = _error(peer.read())
    assert error["code"] == "invalid_request"
    assert f"peer uid {os.getuid()} gid {os.getgid()} is not allowed" in error["message"]
    assert peer.closed_by_peer()
    peer.close()


def test_peer_allowed_by_its_gid_is_served(make_config, redis_url, start_daemon):
    import os

    config = make_config(redis_url=redis_url, allowed_uids=frozenset({os.getuid() + 1}),
                         allowed_gids=frozenset({os.getgid()}))  # fmt: skip
    daemon = start_daemon(config)
    with daemon.client() as client:
        assert client.ping().redis == "up"


def test_invalid_request_class_is_raised_by_the_client(client):
    with pytest.raises(InvalidRequest):
        client.load("bad{key}")


def test_frame_too_large_still_answers_requests_already_in_flight(peer, new_state):
    from drawstate.protocol import encode_frame

    state = new_state()
    peer.send_raw(
        encode_frame({"id": 7, "op": "save", "state": state.to_dict()}) + struct.pack(">I", 1 << 30)
    )
    replies = {reply["id"]: reply for reply in (peer.read(), peer.read())}
    assert replies[7]["ok"] is True
    assert replies[None]["error"]["code"] == "frame_too_large"
    assert peer.closed_by_peer()


def test_save_meeting_a_tombstone_says_what_closed_it(client, new_state):
    state = new_state()
    client.save(state)
    client.complete(state.lock_key, state.operation_id)
    with pytest.raises(OperationClosed) as caught:
        client.save(state)
    assert caught.value.details["closed_by"] == "complete"


def test_nil_optional_fields_mean_absent(peer):
    reply = peer.request({"id": 3, "op": "ping", "deadline_ms": None})
    assert reply["ok"] is True


def test_slow_loris_partial_frame_is_closed_but_a_busy_client_is_not(make_config, redis_url, start_daemon):
    from drawstate.protocol import encode_frame

    daemon = start_daemon(make_config(redis_url=redis_url, partial_frame_timeout_s=0.3))
    busy, loris = RawPeer(daemon.config.socket_path), RawPeer(daemon.config.socket_path)
    loris.send_raw(encode_frame({"id": 1, "op": "ping"})[:5])  # half a frame, then silence
    frame = encode_frame({"id": 1, "op": "ping"})
    started = time.monotonic()
    sent = 0
    busy.send_raw(frame[:3])
    while time.monotonic() - started < 0.9:  # three timeouts long, always mid-frame
        busy.send_raw(frame[3:] + frame[:3])
        sent += 1
        assert busy.read()["ok"] is True
    assert sent > 10
    assert loris.closed_by_peer()
    busy.send_raw(frame[3:])
    assert busy.read()["ok"] is True
    busy.close()
    loris.close()
