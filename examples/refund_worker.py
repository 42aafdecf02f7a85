"""A refund worker: pays the refunds the outcome stream says are owed, each exactly once.

Every operation ends in exactly one outcome event (complete, rollback or expire). The worker
reads them through a consumer group, so several workers share the load and an event a worker
died on comes back (to it, or to another after --claim-idle). It pays the draws that granted
nothing (failed, or never made) of:

- a `rollback` whose caller was not told to refund (`refunded_by_caller` false: the rollback was
  deferred during a Redis outage, or nobody was left to be told);
- an `expire`: the operation was abandoned until its TTL passed;
- a `complete` with failed draws.

Refunds are keyed by operation id in the worker's own ledger (SQLite here; your payments
database in a game), so an event delivered twice is paid once. An event is acknowledged only
after its refund is committed; a crash in between delivers it again, and the ledger makes the
second delivery a no-op.

    drawstate serve &
    python examples/gacha.py --crash-after 3 --ttl 5   # abandoned: expires after 5 s
    python examples/refund_worker.py --ledger refunds.db --stop-when-idle
"""

from __future__ import annotations

import argparse
import socket
import sqlite3
import sys

from drawstate import Client, OutcomeEvent

SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    operation_id TEXT PRIMARY KEY,
    lock_key TEXT NOT NULL,
    user_id TEXT,
    draws INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    cause TEXT NOT NULL
)
"""


def refund_amount(event: OutcomeEvent) -> int:
    """The price of the draws that granted nothing: price_paid * ungranted / total."""
    price = int(event.metadata.get("price_paid", "0"))
    return price * event.ungranted_count // event.total_count


def pay(ledger: sqlite3.Connection, event: OutcomeEvent) -> bool:
    """Record the refund once per operation; True if this call paid it (False: paid before)."""
    with ledger:  # one transaction: committed before the event is acknowledged
        cursor = ledger.execute(
            "INSERT OR IGNORE INTO refunds VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.operation_id,
                event.lock_key,
                event.metadata.get("user_id"),
                event.ungranted_count,
                refund_amount(event),
                event.event,
            ),
        )
    return cursor.rowcount == 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ledger", default="refunds.db", help="SQLite file of refunds paid")
    parser.add_argument("--group", default="refunds", help="consumer group shared by every refund worker")
    parser.add_argument("--consumer", default=f"worker-{socket.gethostname()}", help="this worker's name")
    parser.add_argument(
        "--claim-idle", type=int, default=60_000, help="ms before taking over another's events"
    )
    parser.add_argument("--stop-when-idle", action="store_true", help="exit once no event comes for a while")
    parser.add_argument("--socket", help="daemon socket [default: $DRAWSTATE_SOCKET or the default path]")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    ledger = sqlite3.connect(args.ledger)
    ledger.execute(SCHEMA)
    with Client(args.socket, timeout=5.0) as client:
        events = client.iter_outcomes(
            args.group, args.consumer, claim_idle_ms=args.claim_idle, stop_when_idle=args.stop_when_idle
        )
        for event in events:  # acknowledged when the loop comes back for the next one
            if not event.refund_owed:
                continue
            paid = pay(ledger, event)
            verb = "refunded" if paid else "already refunded"
            print(
                f"{verb}: {event.operation_id} ({event.event}) {event.ungranted_count} of "
                f"{event.total_count} draws = {refund_amount(event)} to user {event.metadata.get('user_id')}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
