"""Retries that must not double-apply, and many requests in flight on one connection."""

from __future__ import annotations

import time

from drawstate import Client
from tests.support.proxy import TcpProxy
from tests.support.wire import RawPeer


def _save_request(request_id, state, **extra):
    return {"id": request_id, "op": "save", "state": state.to_dict(), **extra}


def test_save_retried_after_a_lost_reply_returns_the_first_reply(client, new_state, rdb):
    state = new_state(completed_count=1, results=[7])
    first = client.save(state, token="retry-token-1")
    # The reply was "lost": the game sends the very same save again, same token.
    again = client.save(state, token="retry-token-1")
    assert again.version == first.version == 1
    assert client.load(state.lock_key, state.operation_id).version == 1


def test_a_save_resent_with_its_token_returns_the_first_version_and_writes_nothing(daemon, new_state, rdb):
    # Straight on the wire, so no client logic stands between the resend and save.lua's token check.
    peer = RawPeer(daemon.config.socket_path)
    try:
        state = new_state(completed_count=1, results=[4])
        first = peer.request(_save_request(1, state, token="replay-me"))
        assert first["ok"] and first["version"] == 1
        key = f"lottery:state:{{{state.lock_key}}}:{state.operation_id}"
        index = f"lottery:ops:{{{state.lock_key}}}"
        stored, scores = rdb.get(key), rdb.zrange(index, 0, -1, withscores=True)

        again = peer.request(_save_request(2, state, token="replay-me"))
        assert again["ok"] and again["version"] == 1
        # A different state under the same token is still that token's save: answered, never applied.
        changed = new_state(operation_id=state.operation_id, completed_count=2, results=[4, 9],
                            last_update_time=state.last_update_time + 5)  # fmt: skip
        third = peer.request(_save_request(3, changed, token="replay-me"))
        assert third["ok"] and third["version"] == 1
        assert rdb.get(key) == stored
        assert rdb.zrange(index, 0, -1, withscores=True) == scores
        assert peer.request(_save_request(4, changed, token="next-draw"))["version"] == 2  # a new token
    finally:
        peer.close()


def test_client_resends_once_when_the_connection_breaks_after_the_daemon_read_the_save(
    daemon, new_state, sock_dir
):
    """The daemon applies the save and answers, but the answer is lost with the connection; the
    client sends the same save again on a new one, and the token makes it a replay."""
    with (
        TcpProxy(daemon.config.socket_path, listen_path=sock_dir / "mitm.sock") as mitm,
        Client(mitm.listen_path, timeout=5) as client,
    ):
        client.ping()  # an open connection: its break is a lost connection, not a refusal
        state = new_state()
        mitm.cut_after_next_request(b"save")
        assert client.save(state).version == 1
        assert mitm.replies_dropped == 1
        assert mitm.connections_accepted == 2  # the original connection, and the one resent on
        assert client.load(state.lock_key, state.operation_id).version == 1


def test_retried_save_with_expect_version_is_not_a_false_conflict(client, new_state):
    state = new_state()
    client.save(state, expect_version=0, token="t-create")
    assert client.save(state, expect_version=0, token="t-create").version == 1
    state.completed_count, state.results = 1, [3]
    assert client.save(state, expect_version=1, token="t-next").version == 2
    assert client.save(state, expect_version=1, token="t-next").version == 2  # replay, no bump


def test_saves_without_token_each_bump_the_version(client, new_state):
    state = new_state()
    assert [client.save(state).version for _ in range(3)] == [1, 2, 3]


def test_fifty_pipelined_requests_on_one_connection_all_answered_by_id(daemon, new_state):
    peer = RawPeer(daemon.config.socket_path)
    states = [new_state(lock_key=f"pipe:{i % 5}") for i in range(25)]
    frames = [_save_request(i, s) for i, s in enumerate(states)]
    frames += [
        {"id": 25 + i, "op": "load", "lock_key": s.lock_key, "operation_id": s.operation_id}
        for i, s in enumerate(states)
    ]
    peer.send_raw(b"".join(__import__("drawstate").protocol.encode_frame(f) for f in frames))
    replies = {reply["id"]: reply for reply in (peer.read() for _ in range(50))}
    assert sorted(replies) == list(range(50))
    assert all(reply["ok"] for reply in replies.values())
    for i, state in enumerate(states):
        loaded = replies[25 + i]["state"]
        # A load pipelined behind its save may run in the same batch; either it sees the save or nil.
        assert loaded is None or loaded["operation_id"] == state.operation_id
    stats = daemon.call(daemon.server.stats.snapshot)
    assert stats["max_batch"] > 1  # the requests shared pipelines
    peer.close()


def test_in_flight_cap_pauses_reading_but_serves_everything(make_config, redis_url, start_daemon, new_state):
    daemon = start_daemon(make_config(redis_url=redis_url, max_inflight_per_connection=4))
    peer = RawPeer(daemon.config.socket_path)
    from drawstate.protocol import encode_frame

    peer.send_raw(b"".join(encode_frame({"id": i, "op": "ping"}) for i in range(40)))
    replies = [peer.read() for _ in range(40)]
    assert sorted(r["id"] for r in replies) == list(range(40))
    peer.close()


def test_replies_carry_the_request_ids_even_out_of_order(daemon, new_state):
    peer = RawPeer(daemon.config.socket_path)
    state = new_state()
    peer.send(_save_request(901, state))
    peer.send({"id": 902, "op": "stats"})
    peer.send({"id": 903, "op": "load", "lock_key": state.lock_key})
    assert {peer.read()["id"] for _ in range(3)} == {901, 902, 903}
    peer.close()


def test_many_threads_share_one_client_safely(client, new_state):
    from concurrent.futures import ThreadPoolExecutor

    states = [new_state(lock_key=f"thread:{i}") for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda s: client.save(s).version, states))
    assert versions == [1] * 40
    assert all(client.load(s.lock_key).operation_id == s.operation_id for s in states)


def test_client_reconnects_after_the_daemon_restarts(redis_url, make_config, new_state):
    from tests.support.daemon import DaemonThread

    config = make_config(redis_url=redis_url)
    first = DaemonThread(config).start()
    client = first.client()
    state = new_state()
    client.save(state)
    first.stop()  # the client's connection is now dead
    second = DaemonThread(config).start()
    try:
        assert client.load(state.lock_key).operation_id == state.operation_id
    finally:
        client.close()
        second.stop()


def test_deadline_passes_to_the_daemon(client, new_state):
    start = time.monotonic()
    client.ping(timeout=0.5)
    assert time.monotonic() - start < 0.5
