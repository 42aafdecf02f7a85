"""The DrawState of one multi-draw operation and its parts (Prize, DrawError), for game code.

Field names and their order follow the original Go lottery engine's JSON, but
the sidecar cannot read the engine's states as they are: the engine keeps no
`operation_id` (it is in its key `lottery:state:<lockKey>:<operationId>`, which
has no hash-tag braces), no `version` and no `metadata`. `drawstated.legacy.convert`
converts them (docs/migration.md). The other way, a document the sidecar
stores decodes into the engine's struct (encoding/json ignores the fields it
lacks), though the engine would not look for it under the sidecar's braced key.
The rules live in rules.py and work on the dict form; these dataclasses are
the friendly face over it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from drawstate.limits import DEFAULT_LIMITS, Limits
from drawstate.rules import (
    FIELD_ORDER,
    InvalidState,
    check_lock_key,
    check_operation_id,
    check_state,
)

__all__ = [
    "FIELD_ORDER",
    "DrawError",
    "DrawState",
    "InvalidState",
    "Prize",
    "check_lock_key",
    "check_operation_id",
    "check_state",
    "new_operation_id",
]


def new_operation_id(now: float | None = None) -> str:
    """Make an operation id `YYYYMMDD_HHMMSS_<8 hex>` (UTC), unique enough per lock key."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}_{secrets.token_hex(4)}"


# --- the dataclasses -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Prize:
    """One prize drawn: what the player got, for display and for refunds."""

    id: str
    name: str = ""
    probability: float = 0.0
    value: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "probability": self.probability,
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class DrawError:
    """A draw that failed; it counts against total_count but granted nothing."""

    draw_index: int
    error_message: str
    timestamp: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "draw_index": self.draw_index,
            "error_message": self.error_message,
            "timestamp": self.timestamp,
        }


@dataclass(slots=True)
class DrawState:
    """Progress of one multi-draw operation; `version` is set by the daemon on each save."""

    lock_key: str
    operation_id: str
    total_count: int
    completed_count: int = 0
    results: list[int] = field(default_factory=list)
    prize_results: list[Prize] = field(default_factory=list)
    errors: list[DrawError] = field(default_factory=list)
    start_time: int = 0
    last_update_time: int = 0
    version: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The wire/JSON form; empty lists and metadata are omitted, as Go's omitempty does."""
        data: dict[str, Any] = {
            "lock_key": self.lock_key,
            "operation_id": self.operation_id,
            "total_count": self.total_count,
            "completed_count": self.completed_count,
        }
        if self.results:
            data["results"] = list(self.results)
        if self.prize_results:
            data["prize_results"] = [prize.to_dict() for prize in self.prize_results]
        if self.errors:
            data["errors"] = [error.to_dict() for error in self.errors]
        data["start_time"] = self.start_time
        data["last_update_time"] = self.last_update_time
        data["version"] = self.version
        if self.metadata:
            data["metadata"] = dict(self.metadata)
        return data

    def validate(self, limits: Limits = DEFAULT_LIMITS) -> None:
        check_state(self.to_dict(), limits)

    def copy(self) -> DrawState:
        """An independent copy: its lists and metadata can change without touching this one."""
        return replace(
            self,
            results=list(self.results),
            prize_results=list(self.prize_results),
            errors=list(self.errors),
            metadata=dict(self.metadata),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> DrawState:
        """Build a state from its dict form, enforcing every rule (raises InvalidState)."""
        check_state(data, limits)
        return cls(
            lock_key=data["lock_key"],
            operation_id=data["operation_id"],
            total_count=data["total_count"],
            completed_count=data["completed_count"],
            results=list(data.get("results") or ()),
            prize_results=[
                Prize(p["id"], p.get("name", ""), float(p.get("probability", 0.0)), p.get("value", 0))
                for p in data.get("prize_results") or ()
            ],
            errors=[
                DrawError(e["draw_index"], e.get("error_message", ""), e["timestamp"])
                for e in data.get("errors") or ()
            ],
            start_time=data["start_time"],
            last_update_time=data["last_update_time"],
            version=data.get("version") or 0,
            metadata=dict(data.get("metadata") or {}),
        )

    @property
    def next_draw_index(self) -> int:
        """1-based index of the draw that comes next (draws and failed draws both count)."""
        return self.completed_count + len(self.errors) + 1

    @property
    def finished(self) -> bool:
        return self.completed_count + len(self.errors) >= self.total_count
