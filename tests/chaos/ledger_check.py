"""The ledger test's verdict: the four invariants of docs/recovery.md, checked for every operation.

Pure functions over what the processes wrote (tests/chaos/ledger_actors.py), the outcome stream
as Redis holds it, and the refund worker's ledger, so the rules can be read (and unit-tested)
apart from the processes that produce the data.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("complete", "rollback", "expire")


@dataclass
class Verdict:
    """Every broken rule, by operation, and the counts a reviewer wants to see."""

    violations: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def fail(self, operation_id: str, rule: str) -> None:
        self.violations.append(f"{operation_id}: {rule}")


def delivered(event: dict[str, Any]) -> dict[int, int]:
    """draw index → result of the draws the final state granted (the indexes no failed draw holds)."""
    failed = set(event.get("failed_draws") or ())
    indexes = [i for i in range(1, event["completed_count"] + len(failed) + 1) if i not in failed]
    return dict(zip(indexes, event.get("results") or (), strict=False))


def check(
    ledger: Iterable[dict[str, Any]],
    events: Iterable[dict[str, Any]],
    stream_refunds: dict[str, int],
    states_left: Iterable[str],
) -> Verdict:
    """Invariants 1 to 4 for every operation the ledger or the stream knows.

    `stream_refunds`: operation id → draws the refund worker paid. `states_left`: operation ids
    whose state is still in Redis after everything ended (there must be none).
    """
    verdict = Verdict()
    started: set[str] = set()
    grants: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    inline: dict[str, dict[str, int]] = defaultdict(dict)  # op → token → draws refunded by that caller
    answered_not_final: set[str] = set()
    for entry in ledger:
        kind, operation_id = entry["k"], entry["op"]
        verdict.counts[f"ledger {kind}"] += 1
        if kind == "start":
            started.add(operation_id)
        elif kind == "grant":
            grants[operation_id][entry["idx"]].add(entry["r"])
        elif kind == "rollback" and entry["final"]:
            inline[operation_id][entry["token"]] = entry["draws"]
        elif kind == "rollback":
            answered_not_final.add(operation_id)

    endings: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        verdict.counts[f"event {event['event']}"] += 1
        if event["event"] in TERMINAL:
            endings[event["operation_id"]].append(event)
            if event["event"] == "rollback" and event.get("deferred"):
                verdict.counts["deferred rollbacks applied"] += 1

    for operation_id in sorted(started | set(endings) | set(grants) | set(inline)):
        _check_operation(
            verdict,
            operation_id,
            endings.get(operation_id, []),
            grants.get(operation_id, {}),
            inline.get(operation_id, {}),
            stream_refunds.get(operation_id),
        )
    for operation_id in states_left:
        verdict.fail(operation_id, "invariant 4: its state is still in Redis after it ended")
    verdict.counts["operations"] = len(started | set(endings))
    verdict.counts["rollbacks answered not final"] = len(answered_not_final)
    return verdict


def _check_operation(
    verdict: Verdict,
    operation_id: str,
    endings: list[dict[str, Any]],
    grants: dict[int, set[int]],
    inline: dict[str, int],
    stream_paid: int | None,
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

    # Invariant 1: each draw index delivered (in the final state) or refunded; a grant is never of
    # a draw the final state does not hold (that draw was refunded, or never saved).
    final = delivered(ending) if ending.get("existed") else {}
    for index, values in grants.items():
        verdict.counts["draws granted"] += 1
        if index not in final:
            verdict.fail(operation_id, f"invariant 1: draw {index} granted but not in the final state")
        elif values != {final[index]}:
            verdict.fail(
                operation_id, f"invariant 1: draw {index} granted as {values}, saved as {final[index]}"
            )
    owed = ending["total_count"] - ending["completed_count"] if ending.get("existed") else 0

    # Invariant 2: one refund decision, against the state removed: at most one inline payer (one
    # token), never both an inline payer and the stream, and the draws refunded are the ones owed.
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
    if owed and refunded != owed:
        verdict.fail(operation_id, f"invariant 1: {owed} draws owed a refund, {refunded} refunded")
    if not owed and refunded and ending.get("existed"):
        verdict.fail(operation_id, f"invariant 1: {refunded} draws refunded, none owed")
    verdict.counts["draws refunded"] += refunded
