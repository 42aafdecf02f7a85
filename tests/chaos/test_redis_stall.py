"""A stalled Redis (SIGSTOP on redis-server) must not stall the daemon.

While Redis is stopped, saves end with `deadline_exceeded` within their own
deadline, measured by the client; ping and stats keep answering (redis
"down") within that deadline too. After SIGCONT the daemon recovers by itself:
no restart, no reconnect by the client. The CI run stalls briefly; the `slow`
run stalls past the daemon's Redis stall detector (redis_socket_timeout_s), so
its connections are torn down and reopened while Redis is still stopped.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from drawstated.codec import decode_state
from drawstated.config import REDIS_SOCKET_TIMEOUT_S
from tests.chaos.probes import reply_code, timed_request
from tests.support.wire import RawPeer

DEADLINE_MS = 300
#: Clients saving at once while Redis is stopped, each on its own connection.
CLIENTS = 8
#: The daemon must be back this soon after SIGCONT (it needs no reconnect, only Redis's backlog).
RECOVERY_BOUND_S = 2.0


def _state(n: int) -> dict[str, Any]:
    now = int(time.time())
    return {
        "lock_key": f"stall:{n % 3}",
        "operation_id": f"op-{n}",
        "total_count": 10,
        "completed_count": 1,
        "results": [n],
        "start_time": now,
        "last_update_time": now,
    }


def _concurrent_saves(peers: list[RawPeer], first: int) -> list[tuple[float, str]]:
    """One save per peer, all sent before any is read; (client-measured seconds, code) each."""
    sent_at = []
    for i, peer in enumerate(peers):
        sent_at.append(time.monotonic())
        peer.send(
            {
                "id": first + i,
                "op": "save",
                "deadline_ms": DEADLINE_MS,
                "state": _state(first + i),
                "token": f"t{first + i}",
            }
        )
    results = []
    for peer, started in zip(peers, sent_at, strict=True):
        reply = peer.read()
        results.append((time.monotonic() - started, reply_code(reply)))
    return results


def _stall_and_recover(own_redis: Any, spawn_daemon: Any, stall_s: float) -> dict[str, Any]:
    daemon = spawn_daemon(own_redis.url)
    peers = [RawPeer(daemon.socket_path, timeout=2) for _ in range(CLIENTS)]
    probe = RawPeer(daemon.socket_path, timeout=2)
    assert {code for _, code in _concurrent_saves(peers, 0)} == {"ok"}
    saves: list[tuple[float, str]] = []
    probes: list[tuple[float, str, str]] = []
    n = CLIENTS
    own_redis.pause()
    try:
        stalled_at = time.monotonic()
        while time.monotonic() - stalled_at < stall_s:
            saves += _concurrent_saves(peers, n)
            n += CLIENTS
            for op in ("ping", "stats"):
                seconds, reply = timed_request(probe, op, deadline_ms=DEADLINE_MS)
                probes.append((seconds, op, reply["redis"] if reply["ok"] else reply_code(reply)))
    finally:
        own_redis.resume()
    resumed_at = time.monotonic()
    recovered_s = None
    while time.monotonic() - resumed_at < 10:
        (_, code), *_ = _concurrent_saves(peers[:1], n)
        n += 1
        if code == "ok":
            recovered_s = time.monotonic() - resumed_at
            break
    after = _concurrent_saves(peers, n)
    for peer in [*peers, probe]:
        peer.close()
    with own_redis.client() as rdb:  # whatever landed late is a whole, valid state
        for key in rdb.scan_iter(match="lottery:state:*"):
            raw = rdb.get(key)
            if raw is not None:
                decode_state(raw)
    return {"saves": saves, "probes": probes, "recovered_s": recovered_s, "after": after}


def _check(run: dict[str, Any], chaos_report: dict[str, Any], label: str, stall_s: float) -> None:
    saves, probes = run["saves"], run["probes"]
    assert saves, "no save was tried during the stall"
    assert {code for _, code in saves} == {"deadline_exceeded"}, saves
    slowest_save = max(seconds for seconds, _ in saves)
    assert slowest_save < DEADLINE_MS / 1000, f"a save took {slowest_save * 1000:.0f} ms"
    assert {(op, state) for _, op, state in probes} == {("ping", "down"), ("stats", "down")}
    slowest_probe = max(seconds for seconds, _, _ in probes)
    assert slowest_probe < DEADLINE_MS / 1000, f"ping/stats took {slowest_probe * 1000:.0f} ms"
    assert run["recovered_s"] is not None, "the daemon did not recover after SIGCONT"
    assert run["recovered_s"] < RECOVERY_BOUND_S
    assert {code for _, code in run["after"]} == {"ok"}
    chaos_report[f"redis stall ({label})"] = (
        f"SIGSTOP {stall_s:.1f} s: {len(saves)} saves with deadline_ms={DEADLINE_MS} all "
        f"deadline_exceeded, slowest {slowest_save * 1000:.0f} ms (client side); {len(probes)} ping/stats, "
        f"slowest {slowest_probe * 1000:.0f} ms, redis 'down'; recovered {run['recovered_s'] * 1000:.0f} ms "
        f"after SIGCONT"
    )


def test_stalled_redis_ends_saves_in_deadline_exceeded_in_time_and_recovers_after_sigcont(
    own_redis, spawn_daemon, chaos_report
):
    stall_s = 1.5
    _check(_stall_and_recover(own_redis, spawn_daemon, stall_s), chaos_report, "short", stall_s)


@pytest.mark.slow
def test_stall_longer_than_the_redis_stall_detector_recovers_too(own_redis, spawn_daemon, chaos_report):
    stall_s = REDIS_SOCKET_TIMEOUT_S + 3
    _check(_stall_and_recover(own_redis, spawn_daemon, stall_s), chaos_report, "past the detector", stall_s)
