"""Refund: what a rolled-back multi-draw operation had granted, returned by MultiDraw.rollback.

The game refunds from it: what the player keeps (results, prize_results),
what was paid for and never granted (ungranted_count), and the metadata saved
at the start (user id, banner, price paid).
"""

from __future__ import annotations

from dataclasses import dataclass

from drawstate.model import DrawError, DrawState, Prize


@dataclass(frozen=True, slots=True)
class Refund:
    """What a rolled-back operation had granted, and whether this caller pays its refund.

    `final` True: this rollback removed the operation and this caller pays the refund, now,
    from `state`: the state removed from Redis (the authority on what was granted), or the
    state this session last saved when Redis held nothing. Pay it idempotently, keyed by
    operation id.

    `final` False: do not refund here. Either Redis was unreachable (`cleanup == "deferred"`:
    the daemon applies the rollback later; until then nobody can load or save the operation
    through it), or the refund was given to the outcome stream; a refund worker reading
    `outcomes` pays it, from the state Redis really held when the rollback applied. `state` is
    then for display only.
    """

    state: DrawState
    cleanup: str
    final: bool = True

    @property
    def results(self) -> list[int]:
        return list(self.state.results)

    @property
    def prize_results(self) -> list[Prize]:
        return list(self.state.prize_results)

    @property
    def errors(self) -> list[DrawError]:
        return list(self.state.errors)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.state.metadata)

    @property
    def granted_count(self) -> int:
        """Draws that granted something (completed_count)."""
        return self.state.completed_count

    @property
    def ungranted_count(self) -> int:
        """Draws paid for that granted nothing: never made, or failed."""
        return self.state.total_count - self.state.completed_count
