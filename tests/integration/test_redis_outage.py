"""Redis going away and coming back, under a running daemon that is never restarted."""

from __future__ import annotations

import socket
import time

import pytest

from drawstate import DrawStateError, OperationClosed, ops
from drawstate.protocol import encode_frame
from drawstated.server.flow import reply_reserves
from testbed.redis_proc import RedisProcess
from tests.support.waiting import wait_until


@pytest.fixture
def durable_redis():
    proc = RedisProcess(appendonly=True).start()
    yield proc
    proc.cleanup()


def test_killed_redis_gives_a_retryable_error_within_the_deadline_then_recovers(
    own_redis, make_config, start_daemon, new_state
):
    daemon = start_daemon(make_config(redis_url=own_redis.url))
    client = daemon.client(timeout=1.0)
    state = new_state()
    client.save(state)
    own_redis.kill()
    started = time.monotonic()
    with pytest.raises(DrawStateError) as caught:
        client.save(state)
    assert time.monotonic() - started < 1.0
    assert caught.value.retryable
    assert caught.value.code == "redis_unavailable"
    assert client.ping().redis == "down"
    own_redis.start()  # a fresh, empty server on the same socket: scripts must be reloaded too
    fresh = new_state()
    assert client.save(fresh).version == 1
    assert client.load(fresh.lock_key, fresh.operation_id) is not None
    assert daemon.call(lambda: daemon.server.stats.redis_retries) > 0
    client.close()


def test_rollback_that_cannot_reach_redis_is_deferred_and_applied_when_it_returns(
    durable_redis, make_config, start_daemon, new_state
):
    daemon = start_daemon(make_config(redis_url=durable_redis.url, cleanup_retry_s=0.05))
    client = daemon.client(timeout=1.0)
    state = new_state(completed_count=2, results=[1, 2])
    client.save(state)
    durable_redis.kill()

    result = client.rollback(state, reason="crash refund", token="refund-a")
    assert result.cleanup == "deferred"
    assert not result.final  # this caller does not refund: the outcome stream will say who does
    assert result.state is not None and result.state.results == [1, 2]  # what the request carried
    again = client.rollback(state.lock_key, state.operation_id, token="refund-a")
    assert (again.cleanup, again.final) == ("deferred", False)
    with pytest.raises(OperationClosed) as other:  # another caller: the rollback is taken
        client.rollback(state.lock_key, state.operation_id, token="refund-b")
    assert other.value.details["closed_by"] == "rollback"

    durable_redis.start()  # the state is still there (AOF) until the daemon deletes it
    assert client.load(state.lock_key, state.operation_id) is None
    with pytest.raises(OperationClosed):
        client.save(state)

    key = f"lottery:state:{{{state.lock_key}}}:{state.operation_id}"
    with durable_redis.client() as rdb:
        wait_until(lambda: not rdb.exists(key))
        wait_until(lambda: daemon.call(lambda: len(daemon.server.cleanup)) == 0)
    [event] = [item.to_dict() for item in client.audit().items]
    assert (event["event"], event["deferred"], event["refunded_by_caller"]) == ("rollback", True, False)
    assert (event["results"], event["reason"]) == ([1, 2], "crash refund")
    assert client.load(state.lock_key) is None
    with pytest.raises(OperationClosed):
        client.save(state)  # the tombstone now refuses it in Redis itself
    client.close()


def test_deferred_rollback_survives_a_daemon_restart(durable_redis, make_config, start_daemon, new_state):
    config = make_config(redis_url=durable_redis.url, cleanup_retry_s=0.05)
    first = start_daemon(config)
    client = first.client(timeout=1.0)
    state = new_state()
    client.save(state)
    durable_redis.kill()
    assert client.rollback(state).cleanup == "deferred"
    client.close()
    first.stop()

    durable_redis.start()
    second = start_daemon(config)  # replays the journal
    key = f"lottery:state:{{{state.lock_key}}}:{state.operation_id}"
    with durable_redis.client() as rdb:
        wait_until(lambda: not rdb.exists(key))
        assert rdb.exists(f"lottery:closed:{{{state.lock_key}}}:{state.operation_id}")
    with second.client() as client:
        assert client.load(state.lock_key) is None


def test_stalled_redis_ends_in_deadline_exceeded_and_ping_stays_responsive(
    own_redis, make_config, start_daemon, new_state
):
    daemon = start_daemon(make_config(redis_url=own_redis.url))
    client = daemon.client(timeout=0.5)
    client.save(new_state())
    own_redis.pause()
    try:
        started = time.monotonic()
        with pytest.raises(DrawStateError) as caught:
            client.save(new_state())
        assert caught.value.code == "deadline_exceeded"
        assert time.monotonic() - started < 0.5
        with daemon.client(timeout=1.0) as probe:
            assert probe.ping().redis == "down"
            assert probe.stats().redis == "down"
    finally:
        own_redis.resume()
    wait_until(lambda: _saves(client, new_state()), timeout=10)
    client.close()


def _saves(client, state) -> bool:
    try:
        return client.save(state).version == 1
    except DrawStateError:
        return False


def test_a_deferred_rollback_that_finds_neither_state_nor_tombstone_writes_no_ending(
    durable_redis, make_config, start_daemon, new_state, caplog
):
    """Never stored (or ended so long ago its tombstone is gone): a second terminal event could pay twice."""
    daemon = start_daemon(make_config(redis_url=durable_redis.url, cleanup_retry_s=0.05))
    client = daemon.client(timeout=1.0)
    state = new_state()  # never saved
    durable_redis.kill()
    deferred = client.rollback(state.lock_key, state.operation_id, token="never-stored")
    assert (deferred.cleanup, deferred.final) == ("deferred", False)
    durable_redis.start()
    wait_until(lambda: daemon.call(lambda: len(daemon.server.cleanup)) == 0)
    assert client.audit().items == []  # nothing written: no ending, no tombstone
    assert any("deferred rollback found nothing to end" in record.getMessage() for record in caplog.records)
    # The caller, told "deferred" for an operation it never stored, resends: now it is decided.
    again = client.rollback(state.lock_key, state.operation_id, token="never-stored")
    assert (again.cleanup, again.existed, again.final) == ("done", False, True)
    client.close()


def test_a_version_guarded_rollback_is_never_deferred(own_redis, make_config, start_daemon, new_state):
    daemon = start_daemon(make_config(redis_url=own_redis.url))
    client = daemon.client(timeout=1.0)
    state = new_state()
    client.save(state)
    own_redis.kill()
    with pytest.raises(DrawStateError) as caught:
        client.rollback(state.lock_key, state.operation_id, expect_version=1, refund_by="stream")
    assert (caught.value.code, caught.value.retryable) == ("redis_unavailable", True)
    assert daemon.call(lambda: len(daemon.server.cleanup)) == 0  # nothing journaled
    client.close()


def test_the_reads_of_a_client_that_left_are_stopped_and_its_writes_run_to_their_end(
    own_redis, make_config, start_daemon, new_state
):
    """A client that gives up (its timeout) closes its connection: its reads stop, its writes do not."""
    daemon = start_daemon(make_config(redis_url=own_redis.url))

    def in_flight() -> int:
        return daemon.call(lambda: daemon.server.stats.in_flight)  # type: ignore[no-any-return]

    saved = new_state(completed_count=1, results=[7])
    finished = new_state(lock_key="player:2002", total=1, completed_count=1, results=[3])
    with daemon.client() as client:
        assert client.save(saved).version == 1
        assert client.save(finished).version == 1
    later = saved.copy()
    later.completed_count, later.results = 2, [7, 8]
    writes = [
        ops.save(later, expect_version=1, ttl_s=None, token=None, durability=None),
        ops.complete(finished.lock_key, finished.operation_id),
    ]
    reads = [ops.load(saved.lock_key, saved.operation_id), ops.pending(saved.lock_key, None, None, None)]
    # Within the connection's byte budget (each read reserves room for its reply): past it, the
    # daemon would read nothing more from the socket, not even the end of the stream.
    frames = [
        encode_frame({"id": n, "deadline_ms": 30_000, **request})
        for n, request in enumerate([*writes, *reads])
    ]
    own_redis.pause()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:
            gone.connect(str(daemon.config.socket_path))
            gone.sendall(b"".join(frames))
            wait_until(lambda: in_flight() == len(frames))  # all waiting on the stopped Redis
        # Hung up: with Redis still stopped, the writes are left, waiting to be applied.
        wait_until(lambda: in_flight() == len(writes))
    finally:
        own_redis.resume()
    wait_until(lambda: in_flight() == 0)
    assert daemon.call(lambda: daemon.server.state.budget.held) == 0
    with daemon.client() as client:
        found = client.load(saved.lock_key, saved.operation_id)
        assert found is not None and (found.version, found.results) == (2, [7, 8])  # the save reached Redis
        assert client.load(finished.lock_key, finished.operation_id) is None  # the complete did
        ended = [
            event for event in client.audit(newest=True).items if event.operation_id == finished.operation_id
        ]
        assert [event.event for event in ended] == ["complete"]
    answered = daemon.call(lambda: dict(daemon.server.stats.requests))
    assert (answered.get(("save", "ok")), answered.get(("complete", "ok"))) == (3, 1)
    assert ("pending", "ok") not in answered, answered  # never answered, never counted
    assert answered.get(("load", "ok")) == 2  # the test's own


def test_a_crowd_that_gave_up_while_the_byte_budget_was_spent_leaves_none_of_it_held(
    own_redis, make_config, start_daemon
):
    """Reads stopped before they ever ran still give back their in-flight slot and their bytes.

    Redis stalls; reads waiting on it spend the daemon's whole byte budget, so it reads nothing
    more. A crowd of clients each send a read and give up. When the budget frees, each waiting
    connection's frame is started and its EOF seen in one loop iteration: the read is stopped
    before its first step. Were that to leak, the budget would stay spent and no one be served.
    """
    pending_reserve = reply_reserves(make_config())["pending"]
    daemon = start_daemon(make_config(redis_url=own_redis.url, max_inflight_bytes=2 * pending_reserve))
    state = daemon.server.state

    def held() -> tuple[int, int]:
        return daemon.call(lambda: (state.stats.in_flight, state.budget.held))

    def frame(request_id: int, lock_key: str, deadline_ms: int) -> bytes:
        return encode_frame(
            {"id": request_id, "deadline_ms": deadline_ms, **ops.pending(lock_key, None, None, None)}
        )

    crowd: list[socket.socket] = []
    own_redis.pause()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
            holder.connect(str(daemon.config.socket_path))
            holder.sendall(frame(1, "stall:1", 1_000) + frame(2, "stall:2", 1_000))  # the budget, spent
            wait_until(lambda: held()[1] >= 2 * pending_reserve)
            for n in range(10):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                client.connect(str(daemon.config.socket_path))
                client.sendall(frame(1, f"crowd:{n}", 20_000))
                crowd.append(client)
            for client in crowd:
                client.close()  # given up
            # The holder's reads end at their deadline: the budget frees and the crowd is let in.
            wait_until(lambda: held() == (0, 0), timeout=15)
    finally:
        for client in crowd:
            client.close()
        own_redis.resume()
    with daemon.client() as client:
        assert [client.load(f"crowd:{n}") for n in range(4)] == [None] * 4
    assert held() == (0, 0)
