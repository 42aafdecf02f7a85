"""What the client's calls return: frozen records, so a result can be kept and shared safely."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from drawstate.model import DrawState, Prize
from drawstate.protocol import Durability, RefundBy

__all__ = [
    "AuditPage",
    "Cleanup",
    "Durability",
    "OutcomeEvent",
    "PendingItem",
    "PendingPage",
    "Ping",
    "RefundBy",
    "RollbackResult",
    "SaveResult",
    "Stats",
]

#: Whether a rollback's state is gone from Redis now, or its removal is journaled for later.
Cleanup = Literal["done", "deferred"]


@dataclass(frozen=True, slots=True)
class Ping:
    """The daemon answered; `redis` says whether its Redis did (within 250 ms)."""

    redis: Literal["up", "down"]
    version: str

    @property
    def up(self) -> bool:
        return self.redis == "up"


@dataclass(frozen=True, slots=True)
class SaveResult:
    version: int
    ttl_s: int
    #: Replicas that acknowledged the write (only for durability "replicated").
    replicas: int | None = None


@dataclass(frozen=True, slots=True)
class RollbackResult:
    """What a rollback did, and who pays the refund.

    `final` True: this caller rolled the operation back and pays the refund, computed from
    `state` (the state removed from Redis; None when nothing was stored). `final` False: this
    caller must not refund: the rollback is `cleanup == "deferred"` (Redis was unreachable; it
    is journaled and applied later) or was decided for the outcome stream, whose event pays it.
    """

    state: DrawState | None
    cleanup: Cleanup
    final: bool = False
    #: A state was stored, and this rollback removed it.
    existed: bool = False
    #: The token this rollback went out with: resend with it to get the same answer.
    token: str = ""


@dataclass(frozen=True, slots=True)
class PendingItem:
    lock_key: str
    operation_id: str
    completed_count: int
    total_count: int
    version: int
    last_update_time: int
    age_s: int


@dataclass(frozen=True, slots=True)
class PendingPage:
    items: list[PendingItem]
    #: Pass back to get the next page; None when the listing is done.
    cursor: str | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of the outcome stream read as history (`audit`), oldest first."""

    items: list[OutcomeEvent]
    #: Pass back to get the next page; None when the listing is done.
    cursor: str | None


@dataclass(frozen=True, slots=True)
class OutcomeEvent:
    """How one operation ended (or a note about it), as the outcome stream records it.

    `event` is "complete", "rollback" or "expire" (terminal: each operation has exactly one,
    possibly delivered twice, identical but for `id`), or "rollback-superseded" (a deferred
    rollback that found the operation ended another way: nothing to pay). A refund worker pays
    what `refund_owed` says, keyed by `operation_id`.
    """

    id: str
    event: str
    lock_key: str
    operation_id: str
    time: int
    reason: str = ""
    existed: bool = False
    refunded_by_caller: bool = False
    deferred: bool = False
    closed_by: str | None = None
    completed_count: int = 0
    total_count: int = 0
    #: Draw indexes (1-based) that failed: granted nothing, refunded.
    failed_draws: tuple[int, ...] = ()
    results: tuple[int, ...] = ()
    prize_results: tuple[Prize, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    #: The raw text of a state that could not be read (a manual refund needs it), else None.
    corrupted_state: str | None = None

    TERMINAL: ClassVar[frozenset[str]] = frozenset({"complete", "rollback", "expire"})

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> OutcomeEvent:
        return cls(
            id=str(item["id"]),
            event=str(item["event"]),
            lock_key=str(item.get("lock_key", "")),
            operation_id=str(item.get("operation_id", "")),
            time=int(item.get("time", 0)),
            reason=str(item.get("reason", "")),
            existed=bool(item.get("existed", False)),
            refunded_by_caller=bool(item.get("refunded_by_caller", False)),
            deferred=bool(item.get("deferred", False)),
            closed_by=item.get("closed_by"),
            completed_count=int(item.get("completed_count", 0)),
            total_count=int(item.get("total_count", 0)),
            failed_draws=tuple(item.get("failed_draws") or ()),
            results=tuple(item.get("results") or ()),
            prize_results=tuple(Prize(**prize) for prize in item.get("prize_results") or ()),
            metadata=dict(item.get("metadata") or {}),
            corrupted_state=item.get("corrupted_state"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as the wire carries it (`errors` is the count of failed draws): for JSON output."""
        data: dict[str, Any] = {
            "id": self.id,
            "event": self.event,
            "lock_key": self.lock_key,
            "operation_id": self.operation_id,
            "time": self.time,
            "reason": self.reason,
            "existed": self.existed,
            "refunded_by_caller": self.refunded_by_caller,
            "deferred": self.deferred,
        }
        if self.closed_by is not None:
            data["closed_by"] = self.closed_by
        if self.corrupted_state is not None:
            data["corrupted_state"] = self.corrupted_state
        elif self.existed:
            data.update(
                completed_count=self.completed_count,
                total_count=self.total_count,
                errors=len(self.failed_draws),
                failed_draws=list(self.failed_draws),
                results=list(self.results),
                prize_results=[prize.to_dict() for prize in self.prize_results],
                metadata=dict(self.metadata),
            )
        return data

    @property
    def terminal(self) -> bool:
        return self.event in self.TERMINAL

    @property
    def refund_owed(self) -> bool:
        """Whether a refund worker pays this one: an ending with draws that granted nothing (failed,
        or never made) whose refund no rollback caller was told to pay. A complete can owe one too:
        its failed draws. See `needs_manual_refund` for the one kind whose amount is unknown."""
        return self.terminal and self.existed and not self.refunded_by_caller and self.ungranted_count > 0

    @property
    def needs_manual_refund(self) -> bool:
        """An ending the stream pays whose state could not be read: a refund is owed, but its amount
        is not in the event (`corrupted_state` holds the raw text for whoever settles it). A refund
        worker must park it for a person, never skip it: no one else will pay it."""
        return (
            self.terminal
            and self.existed
            and not self.refunded_by_caller
            and self.corrupted_state is not None
        )

    @property
    def ungranted_count(self) -> int:
        """Draws paid for that granted nothing (failed or never made): what a refund covers."""
        return max(0, self.total_count - self.completed_count)


@dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the daemon's counters (docs/protocol.md §7.7); fields it adds later land in `extra`."""

    redis: Literal["up", "down"]
    version: str
    uptime_s: int
    #: Requests answered, by op and reply code ("ok" or an error code).
    requests: dict[str, dict[str, int]]
    #: Latency percentiles per op: p50_ms, p90_ms, p99_ms, p99.9_ms.
    latency: dict[str, dict[str, float]]
    in_flight: int
    connections: int
    connections_total: int
    connections_refused: int
    redis_retries: int
    redis_connects: int
    batches: int
    mean_batch: float
    max_batch: int
    deferred_rollbacks: int
    deferred_applied: int = 0
    deferred_superseded: int = 0
    events_to_publish: int = 0
    sweeps: int = 0
    expired: int = 0
    events_written_late: int = 0
    outcome_stream_length: int = 0
    outcome_stream_over_cap: bool = False
    #: "compiled", "pure" or "partial": whether the daemon runs its compiled hot path (None: older daemon).
    hot_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, reply: Mapping[str, Any]) -> Stats:
        known = {item.name for item in fields(cls)} - {"extra"}
        values = {name: reply[name] for name in known if name in reply}
        extra = {
            name: value for name, value in reply.items() if name not in known and name not in ("id", "ok")
        }
        return cls(**values, extra=extra)
