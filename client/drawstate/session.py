"""What a multi-draw session knows and decides, apart from how it talks to the daemon.

MultiDraw (blocking) and AsyncMultiDraw (asyncio) are this core plus I/O: the next state to
save for a draw, the token a resend reuses, when the session has lost the operation, what a
rollback's answer means, what leaving a `with` block does. Keeping it in one place keeps the
two behaving exactly alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from drawstate.errors import DrawStateError, OperationClosed, OutcomeUnknown, VersionConflict
from drawstate.limits import MAX_ERROR_MESSAGE_CHARS, MAX_REASON_CHARS
from drawstate.model import DrawError, DrawState, Prize, new_operation_id
from drawstate.ops import new_token, state_map
from drawstate.refund import Refund
from drawstate.resend import Retry, maybe_applied, session_retry
from drawstate.results import Durability, RollbackResult

#: What `record` takes: a range-draw result, a Prize, or a failed draw (a DrawError or the exception).
DrawResult: TypeAlias = int | Prize | DrawError | BaseException
OnError = Literal["keep", "rollback"]
ON_ERROR_POLICIES: tuple[OnError, ...] = ("keep", "rollback")


@dataclass(frozen=True, slots=True)
class PlannedSave:
    """One save to send, and to resend unchanged: the state, its token, the version expected.

    `state` is the session's candidate, a DrawState nothing else holds: passed to Client.save as
    is, a long operation's saves are sent as appends (appends.py), as a caller's own would be.
    """

    state: DrawState
    token: str
    expect_version: int


def _same_draws(a: DrawState, b: DrawState) -> bool:
    """Whether two states send the same save but for its times: the same draws, recorded again.

    Compared as sent (the version is not), so a Prize subclass matches an equal Prize. A failed
    draw recorded again matches by index and message: its timestamp is taken anew each time.
    """
    return _sent_without_times(a) == _sent_without_times(b)


def _sent_without_times(state: DrawState) -> dict[str, Any]:
    """The state as sent, less the times a draw recorded again takes afresh."""
    data = state_map(state)
    data["last_update_time"] = 0
    if "errors" in data:
        data["errors"] = [{**error, "timestamp": 0} for error in data["errors"]]
    return data


def new_state(
    lock_key: str, total_count: int, metadata: Mapping[str, str] | None, operation_id: str | None
) -> DrawState:
    """The first state of a new operation, checked here: a bad one raises InvalidState (a ValueError)."""
    now = int(time.time())
    state = DrawState(
        lock_key=lock_key,
        operation_id=operation_id or new_operation_id(),
        total_count=total_count,
        start_time=now,
        last_update_time=now,
        metadata=dict(metadata or {}),
    )
    state.validate()
    return state


class SessionCore:
    """The state of one session: the operation as last saved, and whether this session may still act."""

    def __init__(
        self,
        state: DrawState,
        *,
        ttl_s: int | None,
        on_error: OnError,
        durability: Durability | None,
        resend_deadline_s: float,
    ) -> None:
        if on_error not in ON_ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_POLICIES)}, got {on_error!r}")
        self.ttl_s = ttl_s
        self.on_error: OnError = on_error
        self.durability = durability
        self.resend_deadline_s = resend_deadline_s
        self._state = state.copy()
        #: "complete" or "rollback" once this session closed the operation.
        self._closed: str | None = None
        self._refund: Refund | None = None
        #: Set when another process took the operation over or closed it.
        self._lost: DrawStateError | None = None
        #: The last save that failed with a retryable error, or was interrupted: resent as is when
        #: the same draw is recorded again, since it may have been applied after all.
        self._unsaved: PlannedSave | None = None
        #: This session's one rollback token, made on first use and kept for every resend.
        self._rollback_token: str | None = None
        #: An attempt of this rollback may have reached Redis without its answer reaching us, so a
        #: later "deferred" answer (Redis unreachable) cannot say who pays: only a "done" one can.
        self._rollback_in_doubt = False

    @property
    def retry(self) -> Retry:
        return session_retry(self.resend_deadline_s)

    # --- what it holds ------------------------------------------------------------------

    @property
    def state(self) -> DrawState:
        """A copy of the state as last saved (version included)."""
        return self._state.copy()

    @property
    def lock_key(self) -> str:
        return self._state.lock_key

    @property
    def operation_id(self) -> str:
        return self._state.operation_id

    @property
    def version(self) -> int:
        return self._state.version

    @property
    def total_count(self) -> int:
        return self._state.total_count

    @property
    def next_draw_index(self) -> int:
        """1-based index of the draw that comes next (total_count + 1 once all are recorded)."""
        return self._state.next_draw_index

    @property
    def remaining(self) -> int:
        """Draws still to make."""
        return self._state.total_count - self._state.next_draw_index + 1

    @property
    def finished(self) -> bool:
        return self._state.finished

    @property
    def closed(self) -> str | None:
        """How this session closed the operation ("complete" or "rollback"), else None."""
        return self._closed

    @property
    def lost(self) -> bool:
        """True once another process took the operation over or closed it."""
        return self._lost is not None

    @property
    def rollback_token(self) -> str:
        """The token this session's rollback goes out with (store it to resend after a crash)."""
        if self._rollback_token is None:
            self._rollback_token = new_token()
        return self._rollback_token

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(lock_key={self.lock_key!r}, operation_id={self.operation_id!r}, "
            f"next_draw={self.next_draw_index}/{self.total_count}, version={self.version}, "
            f"closed={self._closed!r}, lost={self.lost})"
        )

    # --- decisions ----------------------------------------------------------------------

    def check_usable(self) -> None:
        """Raise if this session may not act: it lost the operation, or closed it."""
        if self._lost is not None:
            lost = self._lost
            raise type(lost)(
                f"this session lost operation {self.operation_id} ({lost.message}); resume it to act on it",
                details=lost.details,
            )
        if self._closed is not None:
            raise OperationClosed(
                f"operation {self.operation_id} was closed by this session ({self._closed})",
                details={"closed_by": self._closed},
            )

    def _now(self, state: DrawState) -> int:
        # last_update_time never goes below what is stored (another host's clock may run ahead).
        return max(int(time.time()), state.last_update_time, state.start_time)

    def claim_candidate(self) -> DrawState:
        """The state a claim saves: unchanged but for a fresh last_update_time."""
        self.check_usable()
        candidate = self._state.copy()
        candidate.last_update_time = self._now(candidate)
        return candidate

    def record_candidate(self, result: DrawResult) -> tuple[DrawState, int]:
        """The state after recording `result` as the next draw, and that draw's 1-based index."""
        self.check_usable()
        if self._state.finished:
            raise ValueError(
                f"all {self._state.total_count} draws of {self._state.operation_id} are recorded"
            )
        candidate = self._state.copy()
        index = candidate.next_draw_index
        now = self._now(candidate)
        if isinstance(result, bool):  # an int subclass, never a draw result
            raise TypeError("a draw result must be an int, a Prize, a DrawError or an exception")
        if isinstance(result, int):
            candidate.results.append(result)
            candidate.completed_count += 1
        elif isinstance(result, Prize):
            candidate.prize_results.append(result)
            candidate.completed_count += 1
        elif isinstance(result, DrawError):
            if result.draw_index != index:
                raise ValueError(f"the DrawError is for draw {result.draw_index}, the next draw is {index}")
            candidate.errors.append(result)
        elif isinstance(result, BaseException):
            message = f"{type(result).__name__}: {result}"[:MAX_ERROR_MESSAGE_CHARS]
            candidate.errors.append(DrawError(index, message, now))
        else:
            raise TypeError("a draw result must be an int, a Prize, a DrawError or an exception")
        candidate.last_update_time = now
        return candidate, index

    def plan_save(self, candidate: DrawState, expect_version: int | None = None) -> PlannedSave:
        """The save of `candidate`: the failed save again (same token) if it holds the same draws."""
        expect = self._state.version if expect_version is None else expect_version
        if self._unsaved is not None:
            previous = self._unsaved
            if _same_draws(previous.state, candidate):
                return PlannedSave(previous.state, previous.token, expect)
        return PlannedSave(candidate, new_token(), expect)

    def saved(self, plan: PlannedSave, version: int) -> None:
        """The plan's state is what Redis holds now (a resent plan's, not the new candidate)."""
        self._unsaved = None
        plan.state.version = version
        self._state = plan.state

    def save_failed(self, plan: PlannedSave, exc: DrawStateError) -> None:
        if isinstance(exc, (VersionConflict, OperationClosed)):
            self._lost = exc  # another process owns or closed it: stop here
        # A retryable failure may still have been applied: keep it to resend as is.
        self._unsaved = plan if exc.retryable else None

    def save_interrupted(self, plan: PlannedSave) -> None:
        """The call was abandoned mid-way (a cancelled task, an interrupt): it may have been applied."""
        self._unsaved = plan

    def check_completable(self, allow_partial: bool) -> bool:
        """True when this session already completed it; raises while draws remain (unless partial)."""
        if self._closed == "complete":
            return True
        self.check_usable()
        if not self._state.finished and not allow_partial:
            raise ValueError(
                f"{self.remaining} of {self._state.total_count} draws of {self._state.operation_id} "
                "are still to make; roll it back, or pass allow_partial=True"
            )
        return False

    def rollback_reason(self, reason: str, token: str | None) -> str | None:
        """Before a rollback: checks, takes `token` as the session's, and trims the reason."""
        self.check_usable()
        if token is not None:
            self._rollback_token = token
            self._rollback_in_doubt = True  # a stored token: it may have been sent before a crash
        return reason[:MAX_REASON_CHARS] or None

    def rollback_failed(self, exc: DrawStateError) -> None:
        """An attempt of this rollback failed; if it may have reached Redis, its answer is in doubt."""
        if maybe_applied(exc):
            self._rollback_in_doubt = True

    def judge_rollback(self, result: RollbackResult) -> RollbackResult:
        """A rollback answer this session may act on; OutcomeUnknown (resend) or OperationClosed if not.

        - "deferred" tells its caller not to refund: the outcome stream will say who does. That holds
          for a first attempt only. After an attempt that may have reached Redis, that attempt may
          have been decided "this caller pays" and its answer lost; and for an operation this session
          never stored, the stream cannot know its price. Either way only a "done" answer decides.
        - "done" with `existed: false` for an operation this session stored (version > 0): it ended
          earlier, and the record of how (its tombstone, kept `--ttl`) is gone; its terminal event
          says who refunds. Refunding here could pay twice.
        """
        if result.cleanup == "deferred" and (self._rollback_in_doubt or self._state.version == 0):
            self._rollback_in_doubt = True
            raise OutcomeUnknown(
                f"rollback of {self.operation_id} deferred (Redis unreachable) after an attempt that may "
                "have been applied, or of an operation never stored: who refunds is not known yet; "
                "resend the rollback (same token) until it answers done"
            )
        if result.cleanup == "done" and not result.existed and self._state.version > 0:
            closed = OperationClosed(
                f"operation {self.operation_id} was stored but is gone, and the record of how it ended "
                "has expired: its outcome event says who refunds; do not refund here",
                details={"closed_by": "unknown"},
            )
            self._lost = closed
            raise closed
        return result

    def rolled_back(self, result: RollbackResult) -> Refund:
        # The state Redis held is the authority; when none was stored, or the rollback is
        # deferred, what this session saved last is what it knows was granted.
        removed = result.state if result.state is not None else self.state
        self._closed = "rollback"
        self._refund = Refund(removed, result.cleanup, final=result.final)
        return self._refund

    def on_exit(self, exc: BaseException | None) -> Literal["complete", "rollback"] | None:
        """What leaving the `with` block does (see MultiDraw's docstring)."""
        if self._closed is not None or self._lost is not None:
            return None
        if exc is None:
            return "complete" if self._state.finished else None
        if self.on_error != "rollback" or not isinstance(exc, Exception):
            return None
        if isinstance(exc, (VersionConflict, OperationClosed)):
            return None  # someone else has the operation: it is not ours to roll back
        return "rollback"
