"""The ledger test's verdict: the four invariants of docs/recovery.md, checked for every operation.

Pure functions over what the processes wrote (tests/chaos/ledger_actors.py), the outcome stream
as Redis holds it, and the game backend's database (the grants every process and the refund
worker made, the worker's refunds, the events it parked for a person), so the rules can be
read (and unit-tested) apart from the processes that produce the data.

"Delivered" means granted, not merely saved: every result in an operation's final state must
be in the grants table exactly once (by a game process, or by the refund worker for an ending
the game did not finish, never both, never with another result), and refunds cover exactly the
rest of the draws paid for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("complete", "rollback", "expire")
#: How the refund worker signs its grants (examples/refund_worker.py: "refund-worker:<consumer>").
WORKER_PREFIX = "refund-worker"
#: The paths through the money code the default run must take at least once (test_ledger.py).
MONEY_PATHS = (
    "deferred rollbacks applied",
    "rollback-superseded notes",
    "expire events",
    "refunds paid from the stream",
    "refunds paid inline",
    "in-doubt records",
    "draws granted by the refund worker",
    "refunds parked for a person",
    "rollbacks left to the stream",
)
#: Counted and printed even when zero, with the money paths: a zero is worth seeing.
ALWAYS_COUNTED = (
    *MONEY_PATHS,
    *(f"ended by {event}" for event in TERMINAL),
    "draws granted by the game",
    "draws refunded",
    "rollbacks answered not final",
    "terminal events written twice (identical)",
)


@dataclass
class Verdict:
    """Every broken rule, by operation, and the counts a reviewer wants to see."""

    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def fail(self, operation_id: str, rule: str) -> None:
        self.violations.append(f"{operation_id}: {rule}")


@dataclass(frozen=True)
class Grant:
    """One row of the grants table: draw `idx` of `op` granted with result `r`, by `by`."""

    op: str
    idx: int
    r: Any
    by: str


@dataclass
class _Operation:
    """What the ledgers and the backend say of one operation."""

    attempts: dict[int, set[Any]] = field(default_factory=lambda: defaultdict(set))
    granted_new_by: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    rows: dict[int, Grant] = field(default_factory=dict)
    inline: dict[str, int] = field(default_factory=dict)  # token → draws refunded by that caller


def delivered(event: dict[str, Any]) -> dict[int, int]:
    """draw index → result of the draws the final state holds (the indexes no failed draw holds)."""
    failed = set(event.get("failed_draws") or ())
    indexes = [i for i in range(1, event["completed_count"] + len(failed) + 1) if i not in failed]
    return dict(zip(indexes, event.get("results") or (), strict=False))


def check(
    ledger: Iterable[dict[str, Any]],
    events: Iterable[dict[str, Any]],
    stream_refunds: dict[str, int],
    states_left: Iterable[str],
    *,
    grants: Iterable[Grant],
    parked: Iterable[str] = (),
) -> Verdict:
    """Invariants 1 to 4 for every operation the ledger, the stream or the backend knows.

    `stream_refunds`: operation id → draws the refund worker paid. `states_left`: operation ids
    whose state is still in Redis after everything ended (there must be none). `grants`: the
    grants table. `parked`: operation ids the refund worker parked for a person.
    """
    verdict = Verdict()
    started: set[str] = set()
    operations: dict[str, _Operation] = defaultdict(_Operation)
    answered_not_final: set[str] = set()
    for entry in ledger:
        kind, operation_id = entry["k"], entry["op"]
        verdict.counts[f"ledger {kind}"] += 1
        if kind == "start":
            started.add(operation_id)
        elif kind == "grant":
            operations[operation_id].attempts[entry["idx"]].add(entry["r"])
            if entry.get("new"):
                operations[operation_id].granted_new_by[entry["idx"]].add(entry.get("by", "a game process"))
        elif kind == "in-doubt":
            verdict.counts["in-doubt records"] += 1
        elif kind == "rollback":
            if entry.get("by") == "stream":
                verdict.counts["rollbacks left to the stream"] += 1
                if entry["final"]:
                    verdict.fail(operation_id, "a rollback leaving its refund to the stream was told to pay")
            if entry["final"]:
                operations[operation_id].inline[entry["token"]] = entry["draws"]
            else:
                answered_not_final.add(operation_id)
    for row in grants:
        if row.idx in operations[row.op].rows:
            verdict.fail(row.op, f"invariant 1: draw {row.idx} has two rows in the grants table")
        operations[row.op].rows[row.idx] = row
        by_worker = row.by.startswith(WORKER_PREFIX)
        verdict.counts[
            "draws granted by the refund worker" if by_worker else "draws granted by the game"
        ] += 1

    endings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        verdict.counts[f"event {event['event']}"] += 1
        if event["event"] in TERMINAL:
            endings[event["operation_id"]].append(event)
            if event["event"] == "rollback" and event.get("deferred"):
                verdict.counts["deferred rollbacks applied"] += 1
    verdict.counts["rollback-superseded notes"] = verdict.counts["event rollback-superseded"]
    verdict.counts["expire events"] = verdict.counts["event expire"]

    parked_set = set(parked)
    for operation_id in sorted(started | set(endings) | set(operations) | parked_set):
        _check_operation(
            verdict,
            operation_id,
            endings.get(operation_id, []),
            operations.get(operation_id, _Operation()),
            stream_refunds.get(operation_id),
            operation_id in parked_set,
        )
    for operation_id in states_left:
        verdict.fail(operation_id, "invariant 4: its state is still in Redis after it ended")
    verdict.counts["operations"] = len(started | set(endings))
    verdict.counts["rollbacks answered not final"] = len(answered_not_final)
    for name in ALWAYS_COUNTED:
        verdict.counts[name] += 0  # printed even when zero
    return verdict


def _check_operation(
    verdict: Verdict,
    operation_id: str,
    endings: list[dict[str, Any]],
    operation: _Operation,
    stream_paid: int | None,
    parked: bool,
) -> None:
    # Invariant 3: exactly one terminal outcome (copies identical apart from their stream id).
    if not endings:
        verdict.fail(operation_id, "invariant 3: no terminal event")
        return
    distinct = {tuple(sorted((k, repr(v)) for k, v in e.items() if k != "id")) for e in endings}
    if len(distinct) > 1:
        verdict.fail(
            operation_id, f"invariant 3: {len(distinct)} different endings {[e['event'] for e in endings]}"
        )
        return
    if len(endings) > 1:
        verdict.counts["terminal events written twice (identical)"] += 1
    ending = endings[0]
    verdict.counts[f"ended by {ending['event']}"] += 1
    if ending.get("corrupted_state") is not None:
        _check_unreadable(verdict, operation_id, ending, operation, stream_paid, parked)
        return
    if parked:
        verdict.fail(operation_id, "parked for a person, but its ending is readable")
    final = delivered(ending) if ending.get("existed") else {}
    _check_grants(verdict, operation_id, ending, final, operation)
    refunded = _check_refund_decision(verdict, operation_id, ending, operation.inline, stream_paid)

    # Invariant 1: what was paid for and not granted is refunded, exactly: granted + refunded = total.
    owed = ending["total_count"] - ending["completed_count"] if ending.get("existed") else 0
    if owed and refunded != owed:
        verdict.fail(operation_id, f"invariant 1: {owed} draws owed a refund, {refunded} refunded")
    if not owed and refunded and ending.get("existed"):
        verdict.fail(operation_id, f"invariant 1: {refunded} draws refunded, none owed")
    paid_for, granted = ending.get("total_count", 0), len(operation.rows)
    if ending.get("existed") and granted + refunded != paid_for:
        verdict.fail(operation_id, f"invariant 1: {granted} granted + {refunded} refunded of {paid_for} paid")
    verdict.counts["draws refunded"] += refunded


def _check_grants(
    verdict: Verdict, operation_id: str, ending: dict[str, Any], final: dict[int, int], operation: _Operation
) -> None:
    """Invariant 1, delivered: every result of the final state granted once, by one granter, as saved."""
    for index, value in final.items():
        row = operation.rows.get(index)
        if row is None:
            verdict.fail(operation_id, f"invariant 1: draw {index} is in the final state; nobody granted it")
        elif row.r != value:
            verdict.fail(operation_id, f"invariant 1: draw {index} granted as {row.r!r}, saved as {value}")
    for index, row in operation.rows.items():
        if index not in final:
            verdict.fail(
                operation_id, f"invariant 1: draw {index} granted by {row.by} but not in the final state"
            )
        elif row.by.startswith(WORKER_PREFIX) and not _worker_settles(ending):
            verdict.fail(
                operation_id, f"invariant 1: the refund worker granted draw {index} of a {_kind(ending)}"
            )
    for index, values in operation.attempts.items():  # every grant attempt, new or a no-op repeat
        if index not in final:
            verdict.fail(operation_id, f"invariant 1: draw {index} granted but not in the final state")
        elif values != {final[index]}:
            verdict.fail(
                operation_id, f"invariant 1: draw {index} granted as {values}, saved as {final[index]}"
            )
    for index, granters in operation.granted_new_by.items():  # never both: one granter per draw
        row = operation.rows.get(index)
        if len(granters) > 1 or (row is not None and row.by not in granters):
            others = sorted(granters | ({row.by} if row is not None else set()))
            verdict.fail(operation_id, f"invariant 1: draw {index} granted twice, by {others}")


def _check_refund_decision(
    verdict: Verdict,
    operation_id: str,
    ending: dict[str, Any],
    inline: dict[str, int],
    stream_paid: int | None,
) -> int:
    """Invariant 2: one refund decision, against the state removed: at most one inline payer (one
    token), never both an inline payer and the stream. Returns the draws refunded."""
    if len(inline) > 1:
        verdict.fail(operation_id, f"invariant 2: {len(inline)} callers told to refund")
    if inline and ending["event"] != "rollback":
        verdict.fail(operation_id, f"invariant 2: a caller refunded an operation ended by {ending['event']}")
    if inline and not ending.get("refunded_by_caller") and ending.get("existed"):
        verdict.fail(operation_id, "invariant 2: a caller refunded, but the stream owes the refund too")
    if ending.get("refunded_by_caller") and not inline:
        verdict.fail(operation_id, "invariant 2: the stream says its caller refunded; no caller did")
    refunded = sum(inline.values()) if inline else 0
    if inline:
        verdict.counts["refunds paid inline"] += 1
    if stream_paid is not None:
        verdict.counts["refunds paid from the stream"] += 1
        if inline:
            verdict.fail(operation_id, "invariant 2: refunded inline and from the stream")
        refunded += stream_paid
    return refunded


def _check_unreadable(
    verdict: Verdict,
    operation_id: str,
    ending: dict[str, Any],
    operation: _Operation,
    stream_paid: int | None,
    parked: bool,
) -> None:
    """An ending whose state could not be read: owed, amount unknown, so parked for a person; the
    worker neither grants nor refunds from it."""
    if ending.get("refunded_by_caller"):
        return  # its caller was told to pay (it could read what it removed): not the stream's
    if parked:
        verdict.counts["refunds parked for a person"] += 1
    else:
        verdict.fail(operation_id, "invariant 1: its state could not be read and nobody parked its refund")
    if stream_paid is not None or any(row.by.startswith(WORKER_PREFIX) for row in operation.rows.values()):
        verdict.fail(operation_id, "invariant 1: the refund worker settled an unreadable ending by itself")


def _worker_settles(ending: dict[str, Any]) -> bool:
    """The endings whose recorded draws the refund worker grants: an expire, a stream-paid rollback."""
    return ending["event"] in ("expire", "rollback") and not ending.get("refunded_by_caller")


def _kind(ending: dict[str, Any]) -> str:
    return "rollback its caller refunded" if ending["event"] == "rollback" else ending["event"]
