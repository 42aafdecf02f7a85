"""Who pays when things break: lost replies, a host cut off from Redis, a stream Redis refuses, a dead daemon.

Each test has its own redis-server, often behind a proxy (tests/support/proxy.py) that the test
cuts or makes lose a reply, so the daemon meets exactly the failure the rule is about.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from drawstate import Client, MultiDraw, OperationClosed, OutcomeUnknown, Retry
from drawstated.config import Config
from drawstated.redis.scripts import Script
from tests.support.daemon import DaemonThread
from tests.support.proxy import TcpProxy
from tests.support.waiting import wait_until

METADATA = {"user_id": "7", "banner": "winter", "price_paid": "1000"}
#: Short deadlines, so a sweeper takes over an abandoned refund decision within 2 s (the lease).
MAX_DEADLINE_MS = 1000


def _audit(client: Client, operation_id: str) -> list[dict[str, Any]]:
    return [e.to_dict() for e in client.iter_audit() if e.operation_id == operation_id]


def _config(make_config: Any, url: str, directory: Path | None = None, **fields: Any) -> Config:
    if directory is not None:
        fields.update(socket_path=directory / "d.sock", data_dir=directory / "data")
    return make_config(redis_url=url, max_deadline_ms=MAX_DEADLINE_MS, cleanup_retry_s=0.05, **fields)


@pytest.fixture
def proxy(own_redis) -> Iterator[TcpProxy]:
    with TcpProxy(own_redis.socket) as through:
        yield through


def _deferred_though_applied(
    client: Client, proxy: TcpProxy, lock_key: str, results: list[int], roll_back: Callable[[MultiDraw], Any]
) -> MultiDraw:
    """A multi-draw with `results` recorded, rolled back by `roll_back` while Redis runs the close
    but its reply is lost: answered deferred, so its caller pays nothing."""
    draw = MultiDraw.start(client, lock_key, 10, metadata=METADATA)
    for result in results:
        draw.record(result)
    proxy.cut_after_next_request(b"rollback", then_cut=True)
    refund = roll_back(draw)
    assert (refund.cleanup, refund.final) == ("deferred", False)
    return draw


def _player_left(draw: MultiDraw) -> Any:
    return draw.rollback("player left")


def test_a_deferred_rollback_that_redis_applied_is_recorded_as_the_rollback_it_was(
    own_redis, proxy, make_config, start_daemon
):
    daemon = start_daemon(_config(make_config, proxy.url))
    with daemon.client(timeout=2) as client:
        draw = _deferred_though_applied(client, proxy, "lost:rollback", [1, 2], _player_left)
        proxy.restore()
        wait_until(lambda: daemon.call(lambda: len(daemon.server.cleanup)) == 0, timeout=10)
        [event] = _audit(client, draw.operation_id)
    assert (event["event"], event["deferred"], event["refunded_by_caller"]) == ("rollback", True, False)
    assert (event["results"], event["completed_count"]) == ([1, 2], 2)  # the state, not "corrupted"
    assert "corrupted_state" not in event


def test_a_deferred_rollback_that_redis_applied_is_paid_by_the_stream_when_the_next_daemon_applies_it(
    own_redis, proxy, make_config, start_daemon
):
    """The daemon that answered "deferred" stops before Redis is back; its journal's successor
    finds the close applied, its refund decision still open, and gives the refund to the stream."""
    config = _config(make_config, proxy.url)
    first = start_daemon(config)
    with first.client(timeout=2) as client:
        draw = _deferred_though_applied(client, proxy, "lost:restart", [6], _player_left)
    first.stop()  # still cut off: the rollback is left in the journal
    proxy.restore()
    second = start_daemon(config)
    with second.client(timeout=2) as client:
        wait_until(lambda: second.call(lambda: len(second.server.cleanup)) == 0, timeout=10)
        events = _audit(client, draw.operation_id)
    assert [(e["event"], e["deferred"], e["refunded_by_caller"], e["results"]) for e in events] == [
        ("rollback", True, False, [6])
    ]


def test_a_rollback_refunded_by_the_stream_whose_reply_was_lost_is_paid_by_the_stream_once(
    own_redis, proxy, make_config, start_daemon
):
    """Its close.lua decided "the stream pays" and its reply was lost: answered deferred, applied once."""
    daemon = start_daemon(_config(make_config, proxy.url))
    with daemon.client(timeout=2) as client:

        def by_stream(draw: MultiDraw) -> Any:
            return client.rollback(draw.lock_key, draw.operation_id, refund_by="stream", token="lost-1")

        draw = _deferred_though_applied(client, proxy, "lost:by-stream", [5], by_stream)
        proxy.restore()
        wait_until(lambda: daemon.call(lambda: len(daemon.server.cleanup)) == 0, timeout=10)
        again = client.rollback(draw.lock_key, draw.operation_id, token="lost-1")
        events = _audit(client, draw.operation_id)
    assert (again.cleanup, again.final, again.existed) == ("done", False, True)
    # Decided with the removal, before the reply was lost: not by the deferred application.
    assert [(e["event"], e["refunded_by_caller"], e["deferred"], e["results"]) for e in events] == [
        ("rollback", False, False, [5])
    ]


def test_a_rollback_refunded_by_the_stream_is_decided_with_the_removal_and_sends_no_settle(
    own_redis, proxy, make_config, start_daemon
):
    daemon = start_daemon(_config(make_config, proxy.url))
    with daemon.client(timeout=2, retry=Retry(attempts=1)) as client, own_redis.client() as rdb:
        draw = MultiDraw.start(client, "by-stream:one-trip", 5, metadata=METADATA)
        draw.record(2)
        proxy.cut_at_next_request(Script.load("settle").sha.encode())  # a tripwire: it must not be sent
        refund = client.rollback(draw.lock_key, draw.operation_id, refund_by="stream", token="one-trip")
        tomb = rdb.hgetall(f"lottery:closed:{{{draw.lock_key}}}:{draw.operation_id}")
        proxy.restore()
    assert (refund.final, refund.cleanup, refund.existed) == (False, "done", True)
    assert proxy.requests_lost == 0
    assert (tomb[b"final"], tomb[b"token"]) == (b"0", b"one-trip")


def test_a_rollback_the_client_resent_is_never_answered_deferred(
    own_redis, proxy, make_config, start_daemon, sock_dir
):
    """Redis decided "this caller pays" but the answer was lost; the client's resend met Redis cut off.

    A "deferred" answer would tell the caller not to pay, and the stream will not pay either: the
    first decision stands. So the client raises OutcomeUnknown, and a resend with the same token,
    once Redis is back, gets the first answer: final, this caller pays.
    """
    daemon = start_daemon(_config(make_config, proxy.url))
    outcome: dict[str, Any] = {}
    with (
        TcpProxy(daemon.config.socket_path, listen_path=sock_dir / "mitm.sock") as mitm,
        Client(mitm.listen_path, timeout=2, retry=Retry(attempts=None, deadline_s=20)) as client,
    ):
        draw = MultiDraw.start(client, "resent:rollback", 5, metadata=METADATA)
        draw.record(4)
        mitm.cut_after_next_request(b"rollback", then_cut=True)  # applied and settled; answer lost

        def roll_back() -> None:
            try:
                outcome["result"] = client.rollback(draw.lock_key, draw.operation_id, token="resent-1")
            except OutcomeUnknown as exc:
                outcome["unknown"] = exc

        caller = threading.Thread(target=roll_back)
        caller.start()
        mitm.wait_reply_dropped()
        proxy.cut()  # the daemon's host loses Redis before the client's resend gets through
        mitm.restore()
        caller.join(timeout=30)
        assert not caller.is_alive()
        assert "unknown" in outcome, (
            f"answered {outcome.get('result')}: the caller would not pay, nor would the stream"
        )
        proxy.restore()
        wait_until(lambda: daemon.call(lambda: len(daemon.server.cleanup)) == 0, timeout=10)
        again = client.rollback(draw.lock_key, draw.operation_id, token="resent-1")
    assert (again.final, again.cleanup, again.existed) == (True, "done", True)
    assert again.state is not None and again.state.results == [4]


def test_a_deferred_rollback_that_lost_to_a_completion_on_another_host_pays_no_one_and_notes_it(
    own_redis, proxy, make_config, start_daemon, sock_dir
):
    host_a = start_daemon(_config(make_config, proxy.url, sock_dir / "a"))
    host_b = start_daemon(_config(make_config, own_redis.url, sock_dir / "b"))
    with host_a.client(timeout=2) as a, host_b.client(timeout=2) as b:
        draw = MultiDraw.start(a, "hosts:race", 3, metadata=METADATA)
        draw.record(1)
        proxy.cut()  # host A loses Redis; host B keeps it
        refund = draw.rollback("host A gives up")
        assert (refund.cleanup, refund.final) == ("deferred", False)
        resumed = MultiDraw.resume(b, draw.lock_key)  # host B resumes and grants the rest
        assert resumed is not None
        resumed.record(2)
        resumed.record(3)
        resumed.complete()
        proxy.restore()
        wait_until(lambda: host_a.call(lambda: len(host_a.server.cleanup)) == 0, timeout=10)
        events = _audit(b, draw.operation_id)
    assert [e["event"] for e in events] == ["complete", "rollback-superseded"]
    assert events[0]["results"] == [1, 2, 3] and events[1]["closed_by"] == "complete"


def test_an_applied_close_whose_event_redis_refuses_is_answered_as_applied_and_the_event_follows(
    own_redis, make_config, start_daemon
):
    daemon = start_daemon(_config(make_config, own_redis.url, sweep_interval_s=0.1))
    with daemon.client(timeout=2) as client, own_redis.client() as rdb:
        done = MultiDraw.start(client, "event:refused", 1, metadata=METADATA)
        done.record(5)
        rolled = MultiDraw.start(client, "event:refused", 4, metadata=METADATA)
        rolled.record(6)
        rdb.set("lottery:audit", "not a stream")  # every XADD now fails with WRONGTYPE
        assert done.complete().results == [5]  # applied, and answered so: not `internal`
        refund = rolled.rollback("cancel")
        assert (refund.final, refund.cleanup) == (True, "done")
        assert rdb.exists(f"lottery:outbox:{{event:refused}}:{done.operation_id}")  # owed, durably
        rdb.delete("lottery:audit")  # the operator fixes the key; the sweeper writes what is owed
        wait_until(lambda: len(rdb.keys("lottery:outbox:*")) == 0, timeout=10)
        events = {e.operation_id: e.to_dict() for e in client.iter_audit()}
    assert events[done.operation_id]["event"] == "complete"
    assert (events[rolled.operation_id]["event"], events[rolled.operation_id]["refunded_by_caller"]) == (
        "rollback",
        True,
    )


def test_a_refund_decision_a_dead_daemon_left_pending_goes_to_the_stream(
    own_redis, make_config, start_daemon
):
    daemon = start_daemon(_config(make_config, own_redis.url, sweep_interval_s=0.1))
    with daemon.client(timeout=2) as client, own_redis.client() as rdb:
        draw = MultiDraw.start(client, "dead:daemon", 5, metadata=METADATA)
        draw.record(9)
        _close_as_a_dying_daemon_would(rdb, draw, token="dying-caller")
        # The dying daemon never confirmed: its caller was never told to pay. After the lease,
        # the sweeper gives the refund to the stream...
        [event] = wait_until(lambda: _audit(client, draw.operation_id), timeout=10)
        assert (event["event"], event["refunded_by_caller"]) == ("rollback", False)
        # ...and the caller, resending with its token, hears the same: not yours to pay.
        again = client.rollback(draw.lock_key, draw.operation_id, token="dying-caller")
        assert (again.final, again.cleanup, again.existed) == (False, "done", True)


def test_a_refund_decision_a_live_daemon_could_not_confirm_goes_to_the_stream(
    own_redis, proxy, make_config, start_daemon
):
    """The state is removed, then Redis is cut off before the decision (settle.lua) reaches it.

    The daemon answers outcome_unknown: it never told its caller to pay. After the lease, the
    sweeper gives the refund to the stream, and the caller's resend hears the same.
    """
    daemon = start_daemon(_config(make_config, proxy.url, sweep_interval_s=0.1))
    with daemon.client(timeout=2, retry=Retry(attempts=1)) as client:
        draw = MultiDraw.start(client, "cut:settle", 5, metadata=METADATA)
        draw.record(3)
        proxy.cut_at_next_request(Script.load("settle").sha.encode())
        with pytest.raises(OutcomeUnknown):
            client.rollback(draw.lock_key, draw.operation_id, token="unconfirmed")
        assert proxy.requests_lost == 1
        proxy.restore()
        [event] = wait_until(lambda: _audit(client, draw.operation_id), timeout=10)
        assert (event["event"], event["refunded_by_caller"], event["results"]) == ("rollback", False, [3])
        again = client.rollback(draw.lock_key, draw.operation_id, token="unconfirmed")
        assert (again.final, again.cleanup, again.existed) == (False, "done", True)


def _close_as_a_dying_daemon_would(rdb: redis.Redis, draw: MultiDraw, token: str) -> None:
    """close.lua run directly, as a daemon does before it confirms (settle.lua), and then nothing."""
    lock_key, operation_id = draw.lock_key, draw.operation_id
    names = [
        f"lottery:{kind}:{{{lock_key}}}" + ("" if kind == "ops" else f":{operation_id}")
        for kind in ("state", "ops", "closed", "outbox")
    ] + ["lottery:audit"]
    script = Script.load("close")
    lease_ms = 2 * MAX_DEADLINE_MS
    reply = rdb.eval(
        script.source,
        len(names),
        *names,
        "rollback", "direct", token, "dying", operation_id, lock_key, 3_600_000, lease_ms,
    )  # fmt: skip
    assert reply[0] == b"done" and reply[1] == b"p"  # removed, decision pending


def test_the_stream_never_drops_an_event_a_group_still_owes(own_redis, make_config, start_daemon):
    daemon = start_daemon(_config(make_config, own_redis.url, sweep_interval_s=0.1, audit_maxlen=5))
    with daemon.client(timeout=2) as client:
        client.outcomes("refunds", "slow-worker")  # the group exists and reads from the start
        ids = []
        for i in range(20):
            draw = MultiDraw.start(client, f"trim:{i}", 1, metadata=METADATA)
            draw.record(i)
            draw.complete()
            ids.append(draw.operation_id)
        # The sweeper trims toward 5 events but may not drop the 20 the group has not read.
        wait_until(lambda: client.stats().outcome_stream_over_cap, timeout=10)
        assert client.stats().outcome_stream_length == 20
        owed = []
        while events := client.outcomes("refunds", "slow-worker", limit=7):
            owed += [e.operation_id for e in events]
            client.ack("refunds", [e.id for e in events])
        assert owed == ids  # every one, in order
        wait_until(lambda: client.stats().outcome_stream_length <= 5, timeout=10)
        assert not client.stats().outcome_stream_over_cap


def test_a_sidecar_restart_between_close_and_confirm_answers_the_resent_rollback_the_same(
    own_redis, make_config, start_daemon, sock_dir
):
    config = _config(make_config, own_redis.url, sock_dir / "r")
    first = start_daemon(config)
    with first.client(timeout=2) as client:
        draw = MultiDraw.start(client, "restart:settle", 4, metadata=METADATA)
        draw.record(3)
    first.stop()
    with own_redis.client() as rdb:
        _close_as_a_dying_daemon_would(rdb, draw, token="the-caller")
    second = DaemonThread(config).start()  # the caller's resend reaches the restarted daemon
    try:
        with second.client(timeout=2) as client:
            result = client.rollback(draw.lock_key, draw.operation_id, token="the-caller")
            assert (result.final, result.existed) == (True, True)
            assert result.state is not None and result.state.results == [3]
            [event] = wait_until(lambda: _audit(client, draw.operation_id), timeout=5)
            assert event["refunded_by_caller"] is True
            with pytest.raises(OperationClosed):
                client.rollback(draw.lock_key, draw.operation_id, token="someone-else")
    finally:
        second.stop()


def test_gacha_rollback_whose_reply_is_lost_says_refund_pending(own_redis, proxy, make_config, start_daemon):
    daemon = start_daemon(_config(make_config, proxy.url))
    env = {**os.environ, "DRAWSTATE_SOCKET": str(daemon.config.socket_path)}
    gacha = [sys.executable, str(Path(__file__).resolve().parents[2] / "examples" / "gacha.py")]
    crashed = subprocess.run(
        [*gacha, "--seed", "3", "--crash-after", "2"], env=env, capture_output=True, check=False
    )
    assert crashed.returncode == -signal.SIGKILL
    proxy.cut_after_next_request(b"rollback", then_cut=True)  # the close runs; its reply is lost
    result = subprocess.run([*gacha, "--rollback"], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(cleanup deferred)" in result.stdout and "refund pending" in result.stdout
    assert "refunded:" not in result.stdout


def test_an_ending_whose_event_a_dead_daemon_never_wrote_reaches_the_stream(
    redis_url, rdb, make_config, start_daemon
):
    """On Cluster the event is written after the close script: a daemon dying in between leaves the
    marker, and a sweeper writes the event once the lease is over (on one server, the script does)."""
    daemon = start_daemon(
        make_config(redis_url=redis_url, max_deadline_ms=MAX_DEADLINE_MS, sweep_interval_s=0.1)
    )
    with daemon.client(timeout=2) as client:
        draw = MultiDraw.start(client, "dead:complete", 1, metadata=METADATA)
        draw.record(1)
        lock_key, operation_id = draw.lock_key, draw.operation_id
        names = [
            f"lottery:{kind}:{{{lock_key}}}" + ("" if kind == "ops" else f":{operation_id}")
            for kind in ("state", "ops", "closed", "outbox")
        ]  # no stream key: the script leaves the event to its daemon, which dies now
        reply = rdb.eval(
            Script.load("close").source, len(names), *names,
            "complete", "direct", "", "", operation_id, lock_key, 3_600_000, 2 * MAX_DEADLINE_MS,
        )  # fmt: skip
        assert reply[0] == b"done" and reply[4] == b"0"  # ended, event not written
        [event] = wait_until(lambda: _audit(client, operation_id), timeout=10)
    assert (event["event"], event["results"]) == ("complete", [1])
