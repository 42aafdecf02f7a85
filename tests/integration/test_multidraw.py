"""MultiDraw against real daemons, with game processes that really crash (SIGKILL) and resume.

The game processes are examples/gacha.py (and tests/support/resumer.py for the
concurrent-resume race) run as subprocesses on the daemon's socket.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drawstate import (
    Client,
    DrawState,
    DrawStateError,
    MultiDraw,
    OperationClosed,
    Prize,
    VersionConflict,
    new_operation_id,
)
from testbed.redis_proc import RedisProcess
from tests.support.daemon import DaemonProcess
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
GACHA = REPO / "examples" / "gacha.py"
RESUMER = REPO / "tests" / "support" / "resumer.py"
GOLD = Prize("gold", "Gold Dragon", 0.1, 500)
SILVER = Prize("silver", "Silver Wolf", 0.3, 100)
BRONZE = Prize("bronze", "Bronze Cat", 0.6, 20)
METADATA = {"user_id": "1001", "banner": "summer", "price_paid": "1600"}


def _env(sock: Path) -> dict[str, str]:
    return {**os.environ, "DRAWSTATE_SOCKET": str(sock)}


def _gacha(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GACHA), *args],
        env=_env(sock),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _crash(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = _gacha(sock, *args)
    assert result.returncode == -signal.SIGKILL, result.stdout + result.stderr
    return result


def _cli(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from drawstated.cli import main; main()", *args],
        env=_env(sock),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _drawn(stdout: str) -> list[int]:
    """The draw indexes a gacha run printed."""
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("  draw ")]


def _events(client: Client, lock_key: str) -> list[dict]:
    return [event.to_dict() for event in client.iter_audit(lock_key)]


# --- crash, resume, roll back: real game processes ------------------------------------


@pytest.mark.parametrize("k", [1, 4, 9])
def test_game_killed_after_draw_k_resumes_at_k_plus_1_and_finishes_with_exactly_ten_results(
    daemon, client, k
):
    sock = daemon.config.socket_path
    lock_key = f"player:crash{k}"
    crashed = _crash(sock, "--player", f"crash{k}", "--seed", "7", "--crash-after", str(k))
    assert _drawn(crashed.stdout) == list(range(1, k + 1))
    before = client.load(lock_key)
    assert before is not None
    assert before.completed_count == k and len(before.prize_results) == k
    assert before.next_draw_index == k + 1
    assert before.metadata == {"user_id": f"crash{k}", "banner": "summer", "price_paid": "1600"}

    resumed = _gacha(sock, "--player", f"crash{k}", "--seed", "7", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"at draw {k + 1}/10" in resumed.stdout
    assert _drawn(resumed.stdout) == list(range(k + 1, 11))  # nothing drawn twice, nothing skipped
    assert client.load(lock_key) is None  # completed

    [event] = _events(client, lock_key)
    assert event["event"] == "complete"
    assert (event["completed_count"], event["total_count"], event["errors"]) == (10, 10, 0)
    assert len(event["prize_results"]) == 10
    assert event["prize_results"][:k] == [p.to_dict() for p in before.prize_results]  # draws 1..k intact

    # Seeded draws are reproducible: the crash and resume granted what an uninterrupted run grants.
    whole = _gacha(sock, "--player", f"whole{k}", "--seed", "7")
    assert whole.returncode == 0, whole.stderr
    [reference] = _events(client, f"player:whole{k}")
    assert reference["prize_results"] == event["prize_results"]


def test_rollback_after_a_crash_returns_exactly_the_k_granted_results_and_metadata(daemon, client):
    sock = daemon.config.socket_path
    _crash(sock, "--player", "rb", "--seed", "3", "--crash-after", "3")
    saved = client.load("player:rb")
    assert saved is not None

    draw = MultiDraw.resume(client, "player:rb")
    assert draw is not None and draw.next_draw_index == 4
    refund = draw.rollback("player cancelled")
    assert refund.cleanup == "done"
    assert refund.prize_results == saved.prize_results and len(refund.prize_results) == 3
    assert refund.metadata == {"user_id": "rb", "banner": "summer", "price_paid": "1600"}
    assert (refund.granted_count, refund.ungranted_count) == (3, 7)
    assert draw.rollback("again") == refund  # a repeat returns the same refund
    assert client.load("player:rb") is None
    assert MultiDraw.resume(client, "player:rb") is None
    with pytest.raises(OperationClosed):
        draw.record(GOLD)


def test_gacha_rollback_prints_what_was_granted_and_refunds_the_rest_failed_draws_included(daemon, client):
    sock = daemon.config.socket_path
    crashed = _crash(sock, "--player", "2002", "--seed", "7", "--crash-after", "4", "--fail-draw", "2")
    assert "draw  2/10: failed (inventory service timed out)" in crashed.stdout
    saved = client.load("player:2002")
    assert saved is not None and saved.completed_count == 3
    [failure] = saved.errors
    assert failure.draw_index == 2 and "inventory service timed out" in failure.error_message

    rolled = _gacha(sock, "--player", "2002", "--rollback", "--reason", "support ticket 12")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"rolled back operation {saved.operation_id} (cleanup done)" in rolled.stdout
    assert "granted before the crash: 3 of 10 draws" in rolled.stdout
    assert "refunded: 7 of 10 draws = 1120 of 1600 gems" in rolled.stdout

    [event] = _events(client, "player:2002")
    assert event["event"] == "rollback" and event["reason"] == "support ticket 12"
    assert (event["completed_count"], event["errors"], len(event["prize_results"])) == (3, 1, 3)
    assert _gacha(sock, "--player", "2002", "--rollback").returncode == 1  # nothing left to roll back
    assert _gacha(sock, "--player", "2002", "--resume").returncode == 1


def test_two_concurrent_resumers_exactly_one_wins_the_other_gets_version_conflict(daemon, client):
    sock = daemon.config.socket_path
    _crash(sock, "--player", "race", "--seed", "5", "--crash-after", "4")
    crashed = client.load("player:race")
    assert crashed is not None
    procs = [
        subprocess.Popen(
            [sys.executable, str(RESUMER), "player:race"],
            env=_env(sock),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        assert [p.stdout.readline().strip() for p in procs] == [f"loaded {crashed.version}"] * 2
        for proc in procs:  # both have loaded the same version: now both claim
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = [p.stdout.readline().strip() for p in procs]
        assert sorted(outcomes) == [f"claimed {crashed.version + 1}", "lost version_conflict"]
        winner, loser = procs if outcomes[0].startswith("claimed") else procs[::-1]
        out, err = winner.communicate("finish\n", timeout=30)
        assert out.strip() == "completed 10", err
        loser.communicate(timeout=30)
        assert (winner.returncode, loser.returncode) == (0, 3)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    [event] = _events(client, "player:race")
    assert event["event"] == "complete" and len(event["prize_results"]) == 10
    assert event["prize_results"][:4] == [p.to_dict() for p in crashed.prize_results]


def test_a_later_claim_takes_over_and_the_earlier_owner_can_neither_record_nor_roll_back(client):
    first = MultiDraw.start(client, "player:takeover", 10, metadata=METADATA)
    first.record(GOLD)
    second = MultiDraw.resume(client, "player:takeover")
    assert second is not None and second.next_draw_index == 2
    with pytest.raises(VersionConflict):
        first.record(SILVER)
    assert first.lost
    with pytest.raises(VersionConflict):
        first.rollback("not mine any more")  # never refunds an operation another process owns
    with pytest.raises(VersionConflict):
        first.complete(allow_partial=True)
    while not second.finished:
        second.record(BRONZE)
    final = second.complete()
    assert final.prize_results == [GOLD] + [BRONZE] * 9


# --- finding abandoned operations ------------------------------------------------------


def test_abandoned_operation_disappears_from_pending_after_its_ttl(daemon, client):
    sock = daemon.config.socket_path
    _crash(sock, "--player", "ttl", "--ttl", "1", "--crash-after", "2")
    listed = [(i.lock_key, i.completed_count) for i in client.iter_pending()]
    assert ("player:ttl", 2) in listed
    assert [i.completed_count for i in client.pending("player:ttl").items] == [2]

    def gone() -> bool:
        everywhere = [i.lock_key for i in client.iter_pending(older_than_s=0)]
        return "player:ttl" not in everywhere and not client.pending("player:ttl").items

    wait_until(gone, timeout=10)
    assert client.load("player:ttl") is None
    assert MultiDraw.resume(client, "player:ttl") is None
    assert "no pending operations" in _cli(sock, "pending").stdout


def test_pending_older_than_finds_abandoned_operations_across_lock_keys_in_client_and_cli(daemon, client):
    long_ago = int(time.time()) - 600
    abandoned = set()
    for i in range(25):  # game processes that died ten minutes ago, one draw in
        stale = DrawState(
            f"player:gone{i}", new_operation_id(), 10, completed_count=1, results=[i],
            start_time=long_ago, last_update_time=long_ago, metadata=METADATA,
        )  # fmt: skip
        client.save(stale, expect_version=0)  # what a save ten minutes ago left
        abandoned.add((stale.lock_key, stale.operation_id))
    live = MultiDraw.start(client, "player:live", 10, metadata=METADATA)
    live.record(SILVER)

    found = {(i.lock_key, i.operation_id) for i in client.iter_pending(older_than_s=300, limit=7)}
    assert found == abandoned
    assert [i.operation_id for i in client.pending("player:live", older_than_s=300).items] == []
    assert [i.operation_id for i in client.pending("player:live").items] == [live.operation_id]

    listed = _cli(daemon.config.socket_path, "pending", "--older-than", "300", "--json")
    assert {(i["lock_key"], i["operation_id"]) for i in json.loads(listed.stdout)} == abandoned

    lock_key, operation_id = sorted(abandoned)[0]
    draw = MultiDraw.resume(client, lock_key, operation_id)
    assert draw is not None and draw.next_draw_index == 2


# --- the audit trail --------------------------------------------------------------------


def test_audit_stream_holds_one_event_per_rollback_and_complete_with_the_right_counts(daemon, client):
    done = MultiDraw.start(client, "player:audit", 3, metadata=METADATA)
    for prize in (GOLD, SILVER, BRONZE):
        done.record(prize)
    done.complete()
    done.complete()  # a repeat is not a second event
    partial = MultiDraw.start(client, "player:audit", 10, metadata=METADATA)
    partial.record(7)
    partial.record(RuntimeError("rng service down"))
    partial.record(9)
    partial.rollback("crash refund")
    partial.rollback("crash refund")
    with pytest.raises(KeyError), MultiDraw.start(client, "player:audit", 5, on_error="rollback") as failing:
        failing.record(BRONZE)
        raise KeyError("bug in the game")

    events = _events(client, "player:audit")
    assert [(e["event"], e["operation_id"]) for e in events] == [
        ("complete", done.operation_id),
        ("rollback", partial.operation_id),
        ("rollback", failing.operation_id),
    ]
    complete, rollback, on_error = events
    assert (complete["completed_count"], complete["total_count"], len(complete["prize_results"])) == (3, 3, 3)
    assert complete["metadata"] == METADATA
    assert (rollback["completed_count"], rollback["errors"], rollback["results"]) == (2, 1, [7, 9])
    assert rollback["reason"] == "crash refund"
    assert on_error["completed_count"] == 1 and "KeyError" in on_error["reason"]

    sock = daemon.config.socket_path
    human = _cli(sock, "audit", "--lock-key", "player:audit", "--since", "1h")
    lines = human.stdout.splitlines()
    assert human.returncode == 0 and len(lines) == 3
    assert "complete" in lines[0] and "3/3 draws" in lines[0] and "gold x1" in lines[0]
    assert "rollback" in lines[1] and "2/10 draws, 1 failed" in lines[1] and "'crash refund'" in lines[1]
    as_json = json.loads(_cli(sock, "audit", "--json").stdout)
    assert [e["id"] for e in as_json] == [e["id"] for e in events]
    assert "no audit events" in _cli(sock, "audit", "--since", str(int(time.time()) + 60)).stdout
    assert _cli(sock, "audit", "--since", "yesterday").returncode == 2


# --- the context manager's policy -----------------------------------------------------


def test_rollback_during_a_redis_outage_is_deferred_survives_a_daemon_kill_and_applies_when_redis_returns(
    sock_dir,
):
    redis_proc = RedisProcess(appendonly=True).start()
    sock = sock_dir / "d.sock"
    args = ["--redis-url", redis_proc.url, "--data-dir", str(sock_dir / "data")]
    daemons = [DaemonProcess(sock, args).start()]
    try:
        with Client(sock, timeout=3) as client:
            draw = MultiDraw.start(client, "player:outage", 10, metadata=METADATA)
            for prize in (GOLD, SILVER, BRONZE):
                draw.record(prize)
            redis_proc.kill()
            refund = draw.rollback("refund during outage")
        assert (refund.cleanup, refund.final) == ("deferred", False)  # not this caller's to refund
        assert refund.prize_results == [GOLD, SILVER, BRONZE] and refund.metadata == METADATA
        daemons[0].proc.kill()  # SIGKILL: only the journal remembers the rollback
        daemons[0].wait()

        daemons.append(DaemonProcess(sock, args))
        daemons[1].log_path = sock_dir / "second.log"
        daemons[1].start()  # Redis is still down: it serves after its start-up wait
        lock_key, operation_id = draw.lock_key, draw.operation_id
        state_key = f"lottery:state:{{{lock_key}}}:{operation_id}"
        with Client(sock, timeout=3) as client, redis_proc.client() as rdb:
            assert client.load(lock_key, operation_id) is None
            redis_proc.start()  # AOF: the state is back in Redis until the daemon deletes it

            def applied() -> bool:
                present = bool(rdb.exists(state_key))
                try:  # never loadable in between, by id, as the newest, or by a resumer
                    assert client.load(lock_key, operation_id) is None
                    assert client.load(lock_key) is None
                    assert MultiDraw.resume(client, lock_key) is None
                except DrawStateError as exc:  # Redis is coming back: retryable errors only
                    assert exc.retryable, exc
                return not present

            wait_until(applied, timeout=20)
            assert rdb.exists(f"lottery:closed:{{{lock_key}}}:{operation_id}")
            [event] = _events(client, lock_key)
            assert (event["event"], event["deferred"]) == ("rollback", True)
            assert not event["refunded_by_caller"]
            assert event["reason"] == "refund during outage"  # the stream pays: the caller did not
            assert event["completed_count"] == 3 and len(event["prize_results"]) == 3
            with pytest.raises(OperationClosed):
                client.save(draw.state)  # the tombstone refuses the refunded operation for good
    finally:
        for daemon in daemons:
            daemon.stop()
        redis_proc.cleanup()
