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
    """What a rolled-back operation had granted, for the refund.

    `state` is the state the daemon removed from Redis (the authority on what was
    granted); when Redis was unreachable (`cleanup == "deferred"`) or held nothing
    any more, it is the state this session last saved. `cleanup` is "done", or
    "deferred": the daemon deletes the state once Redis is back, and until then
    no one can load or save the operation. Refund now either way.
    """

    state: DrawState
    cleanup: str

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
