"""Operator and refund-worker tools: `drawstate rollback`, `drawstate outcomes`, examples/refund_worker.py.

Each runs as a real process against a real daemon, as an operator or a refund service would.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from drawstate import MultiDraw
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
        f"refunded: {abandoned.operation_id} (expire) 8 of 10 draws = 800 to user 42"
    ]
    # Delivered again (a new group reads the whole stream): the ledger pays nothing twice.
    second = _run(
        sock, str(REFUND_WORKER), "--ledger", str(ledger), "--group", "audit-replay", "--stop-when-idle"
    )
    assert second.stdout.splitlines() == [
        f"already refunded: {abandoned.operation_id} (expire) 8 of 10 draws = 800 to user 42"
    ]
    with sqlite3.connect(ledger) as db:
        assert db.execute("SELECT operation_id, draws, amount, cause FROM refunds").fetchall() == [
            (abandoned.operation_id, 8, 800, "expire")
        ]
