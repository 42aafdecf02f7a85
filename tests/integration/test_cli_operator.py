"""The operator's commands as real processes: pending --watch, audit --limit/--follow, recover, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from drawstate import DrawState, MultiDraw, new_operation_id
from tests.support.waiting import wait_until

METADATA = {"user_id": "77", "banner": "summer", "price_paid": "700"}


def _cli(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drawstate", *args],
        env={**os.environ, "DRAWSTATE_SOCKET": str(sock)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _running(sock: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "drawstate", *args],
        env={**os.environ, "DRAWSTATE_SOCKET": str(sock)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _abandoned(client, count: int, idle_s: int = 600) -> list[DrawState]:
    """Operations whose last save was `idle_s` ago: what a crashed game leaves."""
    long_ago = int(time.time()) - idle_s
    states = []
    for i in range(count):
        state = DrawState(
            f"cli:gone:{i}", new_operation_id(), 10, completed_count=2, results=[1, 2],
            start_time=long_ago, last_update_time=long_ago, metadata=METADATA,
        )  # fmt: skip
        client.save(state, expect_version=0)
        states.append(state)
    return states


def test_recover_reports_abandoned_operations_and_its_dry_run_changes_nothing(daemon, client):
    gone = _abandoned(client, 3)
    live = MultiDraw.start(client, "cli:live", 5, metadata=METADATA)
    live.record(1)
    sock = daemon.config.socket_path
    report = _cli(sock, "recover", "--older-than", "10m", "--json")
    assert report.returncode == 0, report.stderr
    assert sorted(entry["operation_id"] for entry in json.loads(report.stdout)) == sorted(
        s.operation_id for s in gone
    )
    dry = _cli(sock, "recover", "--older-than", "10m", "--rollback", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would roll back") == 4  # three lines and the summary
    assert len(list(client.iter_pending())) == 4  # nothing rolled back


def test_recover_rolls_back_what_was_abandoned_and_leaves_the_refund_to_the_stream(daemon, client):
    gone = _abandoned(client, 3)
    live = MultiDraw.start(client, "cli:live", 5, metadata=METADATA)
    live.record(1)
    result = _cli(
        daemon.config.socket_path, "recover", "--older-than", "600", "--rollback", "--reason", "sweep"
    )
    assert result.returncode == 0, result.stderr
    assert "rolled back: 3 of 3" in result.stdout
    assert [item.operation_id for item in client.iter_pending()] == [live.operation_id]
    events = [event for event in client.iter_audit() if event.event == "rollback"]
    assert sorted(event.operation_id for event in events) == sorted(s.operation_id for s in gone)
    assert all(
        event.reason == "sweep" and event.refund_owed for event in events
    )  # the worker pays 8 draws each
    again = _cli(daemon.config.socket_path, "recover", "--older-than", "600", "--rollback")
    assert again.returncode == 1 and "nothing abandoned" in again.stdout


def test_audit_limit_shows_the_newest_and_follow_then_prints_new_events_as_they_come(daemon, client):
    ended = []
    for i in range(5):
        draw = MultiDraw.start(client, f"cli:audit:{i}", 1, metadata=METADATA)
        draw.record(i)
        draw.complete()
        ended.append(draw.operation_id)
    sock = daemon.config.socket_path
    limited = json.loads(_cli(sock, "audit", "--limit", "2", "--json").stdout)
    assert [event["operation_id"] for event in limited] == ended[-2:]  # like tail -n 2
    first = json.loads(_cli(sock, "audit", "--since", "0", "--limit", "2", "--json").stdout)
    assert [event["operation_id"] for event in first] == ended[:2]  # from --since on

    follower = _running(sock, "audit", "--limit", "1", "--follow", "--json")
    try:
        assert follower.stdout is not None
        assert json.loads(follower.stdout.readline())["operation_id"] == ended[-1]  # the newest first
        later = MultiDraw.start(client, "cli:audit:later", 1, metadata=METADATA)
        later.record(9)
        later.complete()
        new = json.loads(follower.stdout.readline())  # then what happens next
        assert (new["event"], new["operation_id"]) == ("complete", later.operation_id)
    finally:
        follower.terminate()
        follower.communicate(timeout=10)


def test_pending_watch_lists_again_at_each_interval(daemon, client):
    _abandoned(client, 1)
    watcher = _running(daemon.config.socket_path, "pending", "--watch", "0.2", "--json")
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())
        draw = MultiDraw.start(client, "cli:watch", 3, metadata=METADATA)

        def listed_both() -> bool:
            assert watcher.stdout is not None
            return len(json.loads(watcher.stdout.readline())) == 2

        wait_until(listed_both, timeout=10)
        assert len(first) == 1 and draw.operation_id
    finally:
        watcher.terminate()
        watcher.communicate(timeout=10)


def test_every_command_speaks_json(daemon, client):
    sock = daemon.config.socket_path
    _abandoned(client, 1)
    assert json.loads(_cli(sock, "ping", "--json").stdout)["redis"] == "up"
    assert json.loads(_cli(sock, "stats", "--json").stdout)["redis"] == "up"
    assert len(json.loads(_cli(sock, "pending", "--json").stdout)) == 1
    assert json.loads(_cli(sock, "recover", "--older-than", "1m", "--json").stdout)[0]["action"] == "report"
    state = next(iter(client.iter_pending()))
    loaded = _cli(sock, "load", state.lock_key, state.operation_id, "--json").stdout
    assert loaded.count("\n") == 1 and json.loads(loaded)["version"] == 1  # one line
    rolled = json.loads(
        _cli(sock, "rollback", state.lock_key, state.operation_id, "--refund-by", "stream", "--json").stdout
    )
    assert (rolled["final"], rolled["existed"]) == (False, True)  # the stream pays, not this operator
    assert json.loads(_cli(sock, "audit", "--json").stdout)[0]["refunded_by_caller"] is False


def test_every_command_but_serve_takes_json():
    from drawstated.cli import main  # the daemon's command group, as installed

    missing = [
        name
        for name, command in main.commands.items()
        if name != "serve" and "as_json" not in {param.name for param in command.params}
    ]
    assert not missing  # serve is the daemon itself: its logs take --log-format json
