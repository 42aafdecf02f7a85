"""A refund worker: settles each ending the game did not finish, exactly once: owed grants, then refunds.

Every operation ends in exactly one outcome event (complete, rollback or expire). The worker
reads them through a consumer group, so several workers share the load and an event a worker
died on comes back (to it, or to another after --claim-idle). A recorded draw is owed to the
player, and the game grants it after `record` returns; but a game can die between the two, or
its `record` can end in doubt (OutcomeUnknown) with the save applied, and then nobody else
would ever grant it. So, for an `expire`, and for a `rollback` whose caller was not told to
refund (`refunded_by_caller` false: deferred during a Redis outage, or nobody was left to be
told), the worker:

- grants every recorded draw the player has not received yet, through the same inventory
  table the game grants through, keyed by (operation id, draw index): a draw the game granted
  before it died is found there and not granted again;
- refunds the draws that granted nothing (failed, or never made).

A `complete` was granted by the game itself; the worker refunds its failed draws, if any. An
ending whose state could not be read (`needs_manual_refund`: the refund is owed, its amount
unknown) is parked in the `manual` table for a person, with a WARNING naming the operation.

Grants are keyed by (operation id, draw index), refunds and parked events by operation id, in
one database (SQLite here; your game's inventory and payments database in a game), so an event
delivered twice, or a worker run again, settles nothing twice. An event is acknowledged only
after its grants and refund (or its parking) are committed, in one transaction; a crash in
between delivers it again, and the keys make the second delivery a no-op.

    drawstate serve &
    python examples/gacha.py --crash-after 3 --ttl 5   # abandoned: expires after 5 s
    python examples/refund_worker.py --ledger refunds.db --stop-when-idle
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sqlite3
import sys
from dataclasses import dataclass

from drawstate import Client, OutcomeEvent

log = logging.getLogger("refund_worker")

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS grants (
    operation_id TEXT NOT NULL,
    draw_index INTEGER NOT NULL,
    result TEXT NOT NULL,  -- the draw's result as JSON: an int, or a prize's fields
    granted_by TEXT NOT NULL,
    PRIMARY KEY (operation_id, draw_index)
)
""",
    """
CREATE TABLE IF NOT EXISTS refunds (
    operation_id TEXT PRIMARY KEY,
    lock_key TEXT NOT NULL,
    user_id TEXT,
    draws INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    cause TEXT NOT NULL
)
""",
    """
CREATE TABLE IF NOT EXISTS manual (
    operation_id TEXT PRIMARY KEY,
    lock_key TEXT NOT NULL,
    cause TEXT NOT NULL,
    problem TEXT NOT NULL,
    event_id TEXT NOT NULL,
    raw_state TEXT NOT NULL
)
""",
)

#: Endings the game did not finish: their recorded draws may never have been granted.
UNFINISHED = frozenset({"expire", "rollback"})
#: Why an event is parked for a person.
UNREADABLE = "its state could not be read: the refund owed is not in the event"
UNMAPPED = "its results do not say which draw index holds which (both kinds, or too few)"


def open_ledger(path: str) -> sqlite3.Connection:
    ledger = sqlite3.connect(path)
    for statement in SCHEMA:
        ledger.execute(statement)
    return ledger


def grant_once(ledger: sqlite3.Connection, operation_id: str, index: int, result: str, by: str) -> bool:
    """Grant one draw unless it was granted before (by anyone); True if this call granted it.

    The game calls it after `record` returns, the worker for draws the game never granted: one
    key, (operation_id, draw index), so neither ever grants what the other did."""
    cursor = ledger.execute(
        "INSERT OR IGNORE INTO grants VALUES (?, ?, ?, ?)", (operation_id, index, result, by)
    )
    return cursor.rowcount == 1


def recorded_draws(event: OutcomeEvent) -> list[tuple[int, str]] | None:
    """(draw index, result as JSON) of every recorded draw that grants something, or None when the
    event cannot say which index holds which result."""
    failed = set(event.failed_draws)
    indexes = [i for i in range(1, event.completed_count + len(failed) + 1) if i not in failed]
    if event.results and event.prize_results:
        return None
    items = [json.dumps(r) for r in event.results] or [
        json.dumps(prize.to_dict(), sort_keys=True) for prize in event.prize_results
    ]
    if len(items) != len(indexes):
        return None
    return list(zip(indexes, items, strict=True))


def owes_grants(event: OutcomeEvent) -> bool:
    """An ending the game did not finish, whose state is known and no rollback caller settled."""
    return (
        event.event in UNFINISHED
        and event.existed
        and not event.refunded_by_caller
        and event.corrupted_state is None
    )


def refund_amount(event: OutcomeEvent) -> int:
    """The price of the draws that granted nothing: price_paid * ungranted / total."""
    price = int(event.metadata.get("price_paid", "0"))
    return price * event.ungranted_count // event.total_count


@dataclass(frozen=True)
class Settled:
    """What one event's settlement did: draws granted now (of those recorded), refund paid now."""

    granted: int = 0
    recorded: int = 0
    refunded: bool = False
    parked: str = ""


def settle(ledger: sqlite3.Connection, event: OutcomeEvent, granted_by: str) -> Settled:
    """Grant what is owed and refund the rest, or park the event: one transaction, committed
    before the event is acknowledged. Re-running it for the same event changes nothing."""
    with ledger:
        if event.needs_manual_refund:
            return Settled(parked=park(ledger, event, UNREADABLE))
        granted = recorded = 0
        if owes_grants(event):
            draws = recorded_draws(event)
            if draws is None:
                return Settled(parked=park(ledger, event, UNMAPPED))
            recorded = len(draws)
            granted = sum(grant_once(ledger, event.operation_id, i, r, granted_by) for i, r in draws)
        refunded = event.refund_owed and pay(ledger, event)
    return Settled(granted, recorded, refunded)


def pay(ledger: sqlite3.Connection, event: OutcomeEvent) -> bool:
    """Record the refund once per operation; True if this call paid it (False: paid before)."""
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


def park(ledger: sqlite3.Connection, event: OutcomeEvent, problem: str) -> str:
    """Keep the event for a person (once per operation), with the raw state they will need."""
    ledger.execute(
        "INSERT OR IGNORE INTO manual VALUES (?, ?, ?, ?, ?, ?)",
        (event.operation_id, event.lock_key, event.event, problem, event.id, event.corrupted_state or ""),
    )
    return problem


def report(event: OutcomeEvent, settled: Settled) -> None:
    """Say what was settled, once it is committed; a parked event also where an operator looks."""
    user = event.metadata.get("user_id")
    if settled.parked:
        log.warning(
            "operation %s (%s, lock key %s) needs a person: %s; parked in the manual table",
            event.operation_id, event.event, event.lock_key, settled.parked,
        )  # fmt: skip
        print(f"parked for a person: {event.operation_id} ({event.event}) {settled.parked}")
        return
    if settled.recorded:
        print(
            f"granted: {event.operation_id} ({event.event}) {settled.granted} of {settled.recorded} "
            f"recorded draws to user {user} (the rest were granted before)"
        )
    if event.refund_owed:
        verb = "refunded" if settled.refunded else "already refunded"
        print(
            f"{verb}: {event.operation_id} ({event.event}) {event.ungranted_count} of "
            f"{event.total_count} draws = {refund_amount(event)} to user {user}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ledger", default="refunds.db", help="SQLite: grants, refunds, parked")
    parser.add_argument("--group", default="refunds", help="consumer group shared by every refund worker")
    parser.add_argument("--consumer", default=f"worker-{socket.gethostname()}", help="this worker's name")
    parser.add_argument(
        "--claim-idle", type=int, default=60_000, help="ms before taking over another's events"
    )
    parser.add_argument("--stop-when-idle", action="store_true", help="exit once no event comes for a while")
    parser.add_argument("--socket", help="daemon socket [default: $DRAWSTATE_SOCKET or the default path]")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    ledger = open_ledger(args.ledger)
    granted_by = f"refund-worker:{args.consumer}"
    with Client(args.socket, timeout=5.0) as client:
        events = client.iter_outcomes(
            args.group, args.consumer, claim_idle_ms=args.claim_idle, stop_when_idle=args.stop_when_idle
        )
        for event in events:  # acknowledged when the loop comes back for the next one
            if event.needs_manual_refund or owes_grants(event) or event.refund_owed:
                report(event, settle(ledger, event, granted_by))
    return 0


if __name__ == "__main__":
    sys.exit(main())
