"""Operator and refund-worker tools: `drawstate rollback`, `drawstate outcomes`, examples/refund_worker.py.

Each runs as a real process against a real daemon, as an operator or a refund service would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from drawstate import DrawStateCorrupted, MultiDraw
from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
REFUND_WORKER = REPO / "examples" / "refund_worker.py"
METADATA = {"user_id": "42", "banner": "summer", "price_paid": "1000"}


def _run(sock: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        env={**os.environ, "DRAWSTATE_SOCKET": str(sock)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _cli(sock: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(sock, "-c", "from drawstated.cli import main; main()", *args)


def test_cli_rollback_of_a_mistyped_operation_says_nothing_was_stored_and_exits_1(daemon):
    result = _cli(daemon.config.socket_path, "rollback", "player:1", "20260101_000000_typo0000")
    assert result.returncode == 1, result.stderr
    assert "nothing stored" in result.stderr
    assert json.loads(result.stdout)["existed"] is False


def test_cli_rollback_prints_who_refunds_and_a_resend_with_its_token_answers_the_same(daemon, client):
    draw = MultiDraw.start(client, "cli:rb", 10, metadata=METADATA)
    draw.record(4)
    first = _cli(daemon.config.socket_path, "rollback", draw.lock_key, draw.operation_id)
    assert first.returncode == 0, first.stderr
    printed = json.loads(first.stdout)
    assert (printed["final"], printed["existed"], printed["state"]["results"]) == (True, True, [4])
    assert "refund now" in first.stderr
    resent = _cli(
        daemon.config.socket_path, "rollback", draw.lock_key, draw.operation_id, "--token", printed["token"]
    )
    assert json.loads(resent.stdout) == printed
    other = _cli(daemon.config.socket_path, "rollback", draw.lock_key, draw.operation_id)
    assert other.returncode == 4 and "operation_closed" in other.stderr  # another caller: refused


def test_cli_outcomes_reads_a_group_and_acknowledges_with_ack(daemon, client):
    for i in range(3):
        draw = MultiDraw.start(client, f"cli:out:{i}", 1, metadata=METADATA)
        draw.record(i)
        draw.complete()
    sock = daemon.config.socket_path
    peek = _cli(sock, "outcomes", "--group", "ops", "--consumer", "me", "--json")
    assert [json.loads(line)["event"] for line in peek.stdout.splitlines()] == ["complete"] * 3
    again = _cli(sock, "outcomes", "--group", "ops", "--consumer", "me", "--json", "--ack")
    assert len(again.stdout.splitlines()) == 3  # not acknowledged the first time: delivered again
    assert _cli(sock, "outcomes", "--group", "ops", "--consumer", "me").stdout == ""
    refused = _cli(sock, "outcomes", "--group", "ops", "--follow")
    assert refused.returncode == 2 and "--follow needs --ack" in refused.stderr


def test_refund_worker_pays_each_owed_refund_once_and_skips_what_callers_paid(
    redis_url, make_config, start_daemon, sock_dir
):
    daemon = start_daemon(make_config(redis_url=redis_url, sweep_interval_s=0.1))
    sock = daemon.config.socket_path
    with daemon.client(timeout=5) as client:
        abandoned = MultiDraw.start(client, "worker:expired", 10, metadata=METADATA, ttl_s=1)
        abandoned.record(1)
        abandoned.record(2)
        paid_inline = MultiDraw.start(client, "worker:inline", 10, metadata=METADATA)
        paid_inline.record(3)
        assert paid_inline.rollback("player cancelled").final
        finished = MultiDraw.start(client, "worker:done", 1, metadata=METADATA)
        finished.record(4)
        finished.complete()
        wait_until(lambda: any(e.event == "expire" for e in client.iter_audit()), timeout=10)

    ledger = sock_dir / "refunds.db"
    first = _run(sock, str(REFUND_WORKER), "--ledger", str(ledger), "--stop-when-idle")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"granted: {abandoned.operation_id} (expire) 2 of 2 recorded draws to user 42 "
        "(the rest were granted before)",
        f"refunded: {abandoned.operation_id} (expire) 8 of 10 draws = 800 to user 42",
    ]
    # Delivered again (a new group reads the whole stream): the ledger pays nothing twice.
    second = _run(
        sock, str(REFUND_WORKER), "--ledger", str(ledger), "--group", "audit-replay", "--stop-when-idle"
    )
    assert second.stdout.splitlines() == [
        f"granted: {abandoned.operation_id} (expire) 0 of 2 recorded draws to user 42 "
        "(the rest were granted before)",
        f"already refunded: {abandoned.operation_id} (expire) 8 of 10 draws = 800 to user 42",
    ]
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT operation_id, draws, amount, cause FROM refunds").fetchall() == [
            (abandoned.operation_id, 8, 800, "expire")
        ]


def _worker_module() -> ModuleType:
    """examples/refund_worker.py as a module: the game below grants through its `grant_once`."""
    spec = importlib.util.spec_from_file_location("refund_worker", REFUND_WORKER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_refund_worker_grants_the_recorded_draws_the_game_never_granted_and_not_those_it_did(
    redis_url, make_config, start_daemon, sock_dir
):
    daemon = start_daemon(make_config(redis_url=redis_url, sweep_interval_s=0.1))
    sock = daemon.config.socket_path
    ledger_path = sock_dir / "backend.db"
    worker = _worker_module()
    ledger = worker.open_ledger(str(ledger_path))
    with daemon.client(timeout=5) as client:
        draw = MultiDraw.start(client, "worker:in-doubt", 4, metadata=METADATA, ttl_s=1)
        index = draw.record(11)
        with ledger:  # the game grants draw 1 after record returned...
            assert worker.grant_once(ledger, draw.operation_id, index, "11", "game")
        draw.record(RuntimeError("prize service down"))  # draw 2 failed: refunded
        draw.record(33)  # ...and dies before granting draw 3: saved, owed, never granted
        wait_until(lambda: any(e.event == "expire" for e in client.iter_audit()), timeout=10)

    granted_line = (
        f"granted: {draw.operation_id} (expire) 1 of 2 recorded draws to user 42 "
        "(the rest were granted before)"
    )
    first = _run(
        sock, str(REFUND_WORKER), "--ledger", str(ledger_path), "--consumer", "w1", "--stop-when-idle"
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        granted_line,
        f"refunded: {draw.operation_id} (expire) 2 of 4 draws = 500 to user 42",
    ]
    again = _run(
        sock, str(REFUND_WORKER), "--ledger", str(ledger_path), "--group", "replay", "--stop-when-idle"
    )
    assert again.stdout.splitlines()[0].startswith(f"granted: {draw.operation_id} (expire) 0 of 2")
    rows = ledger.execute("SELECT draw_index, result, granted_by FROM grants ORDER BY draw_index").fetchall()
    assert rows == [(1, "11", "game"), (3, "33", "refund-worker:w1")]  # each draw once, by one granter
    assert ledger.execute("SELECT draws, amount FROM refunds").fetchall() == [(2, 500)]
    ledger.close()


def test_refund_worker_parks_a_rollback_of_an_unreadable_state_and_acknowledges_it_only_once_parked(
    daemon, client, rdb, sock_dir
):
    operation_id = "20260101_000000_0000beef"
    rdb.set(f"lottery:state:{{worker:corrupt}}:{operation_id}", b"not json at all")
    with pytest.raises(DrawStateCorrupted):
        client.rollback("worker:corrupt", operation_id)
    [event] = [e for e in client.iter_audit() if e.operation_id == operation_id]
    assert event.needs_manual_refund and not event.refund_owed  # owed, but no amount to pay
    sock = daemon.config.socket_path
    ledger_path = sock_dir / "backend.db"
    with sqlite3.connect(ledger_path) as db:  # a ledger whose manual table cannot take the event
        db.execute("CREATE TABLE manual (operation_id TEXT PRIMARY KEY)")
    worker = [str(REFUND_WORKER), "--ledger", str(ledger_path), "--consumer", "w1", "--claim-idle", "1"]

    broken = _run(sock, *worker, "--stop-when-idle")
    assert broken.returncode != 0 and "manual" in broken.stderr  # not parked: not acknowledged
    with sqlite3.connect(ledger_path) as db:
        db.execute("DROP TABLE manual")
    parked = _run(sock, *worker, "--stop-when-idle")
    assert parked.returncode == 0, parked.stderr
    assert parked.stdout.splitlines() == [
        f"parked for a person: {operation_id} (rollback) its state could not be read: "
        "the refund owed is not in the event"
    ]
    assert f"WARNING refund_worker: operation {operation_id} (rollback" in parked.stderr
    with sqlite3.connect(ledger_path) as db:
        assert db.execute("SELECT operation_id, cause, raw_state FROM manual").fetchall() == [
            (operation_id, "rollback", "not json at all")
        ]
        assert db.execute("SELECT COUNT(*) FROM refunds").fetchone() == (0,)
    after = _run(sock, *worker, "--stop-when-idle")
    assert (after.returncode, after.stdout) == (0, "")  # acknowledged once parked: not delivered again
