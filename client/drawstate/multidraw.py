"""MultiDraw: one multi-draw operation end to end: start, record each draw, complete, resume, roll back.

Every save after the first carries the version the session last saw, so two
processes never both write one operation; every save carries a token that its
retries reuse, so a repeat never applies twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, TypeAlias

from drawstate.client import Client
from drawstate.errors import (
    DrawStateError,
    OperationClosed,
    VersionConflict,
)
from drawstate.limits import MAX_ERROR_MESSAGE_CHARS, MAX_REASON_CHARS
from drawstate.model import DrawError, DrawState, Prize, new_operation_id
from drawstate.refund import Refund
from drawstate.resend import RESEND_DEADLINE_S, resend

log = logging.getLogger("drawstate.multidraw")

#: What `record` takes: a range-draw result, a Prize, or a failed draw (a DrawError or the exception).
DrawResult: TypeAlias = int | Prize | DrawError | BaseException
OnError = Literal["keep", "rollback"]
ON_ERROR_POLICIES: tuple[OnError, ...] = ("keep", "rollback")


class MultiDraw:
    """One multi-draw operation, driven by one game process.

    Make one with `MultiDraw.start` (a new operation) or `MultiDraw.resume` (an
    interrupted one), then call `record(result)` after each draw, and grant the
    draw to the player only once `record` has returned: a draw is safe only when
    it is saved. Finish with `complete()` (all draws made), or `rollback(reason)`
    (remove it and get back what was granted, for the refund).

    Ownership: a session may write only while nobody else has saved the
    operation since it last did. `resume` claims the operation by saving it
    (unchanged, with a fresh last_update_time) with the version it loaded; of
    two resumers that loaded the same version exactly one claim succeeds and the
    other raises `VersionConflict`. A later claim takes the operation over from
    its previous owner, whose next save then raises `VersionConflict`. A session
    that got `VersionConflict` or `OperationClosed` has lost the operation: it
    refuses every further record, complete and rollback (resume it anew to act).

    Context-manager policy (`with MultiDraw.start(...) as draw:`):

    - the block ends normally with every draw recorded → `complete()`;
    - the block ends normally with draws still to make → the state is kept;
    - an `Exception` escapes the block → `on_error` decides: `"keep"` (the
      default) leaves the state in Redis, so a new process can `resume` it (or
      an operator roll it back) until its TTL runs out; `"rollback"` rolls it
      back with the exception as the reason. The exception always propagates;
    - never a rollback when the session has lost the operation (another
      process owns it, or it is already closed), nor for `KeyboardInterrupt`,
      `SystemExit` or other non-`Exception` exits: the state is kept.

    `ttl_s` is the lifetime of the state after each save (the daemon's default
    when None); `durability` ("ack"/"replicated") is passed to every save;
    `resend_deadline_s` is how long a save or a rollback is resent, with the same
    token, while its answer is retryable, before giving up (OutcomeUnknown when
    it may have taken effect). A session is one flow of one process: do not share
    it between threads.
    """

    def __init__(
        self,
        client: Client,
        state: DrawState,
        *,
        ttl_s: int | None = None,
        on_error: OnError = "keep",
        durability: str | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> None:
        if on_error not in ON_ERROR_POLICIES:
            raise ValueError(f"on_error must be one of {', '.join(ON_ERROR_POLICIES)}, got {on_error!r}")
        self.client = client
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
        #: The last save that failed with a retryable error, and its token: resent as is
        #: when the same draw is recorded again, since it may have been applied after all.
        self._unsaved: tuple[dict[str, Any], str] | None = None
        #: This session's one rollback token, made on first use and kept for every resend.
        self._rollback_token: str | None = None

    # --- making one -----------------------------------------------------------------

    @classmethod
    def start(
        cls,
        client: Client,
        lock_key: str,
        total_count: int,
        *,
        metadata: Mapping[str, str] | None = None,
        operation_id: str | None = None,
        ttl_s: int | None = None,
        on_error: OnError = "keep",
        durability: str | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> MultiDraw:
        """Save the initial state (no draws yet) of a new operation, before the first draw.

        `metadata` holds what a refund needs (user id, banner, price paid).
        The save is create-only: an existing `operation_id` raises VersionConflict.
        """
        now = int(time.time())
        state = DrawState(
            lock_key=lock_key,
            operation_id=operation_id or new_operation_id(),
            total_count=total_count,
            start_time=now,
            last_update_time=now,
            metadata=dict(metadata or {}),
        )
        session = cls(
            client, state, ttl_s=ttl_s, on_error=on_error, durability=durability,
            resend_deadline_s=resend_deadline_s,
        )  # fmt: skip
        session._save(state.copy(), expect_version=0)
        return session

    @classmethod
    def resume(
        cls,
        client: Client,
        lock_key: str,
        operation_id: str | None = None,
        *,
        claim: bool = True,
        ttl_s: int | None = None,
        on_error: OnError = "keep",
        durability: str | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> MultiDraw | None:
        """Load an interrupted operation (the newest live one of `lock_key` without an id).

        Returns None when there is none (never started, completed, rolled back,
        or expired). `next_draw_index` says which draw comes next. With `claim`
        (the default) the operation is claimed before this returns: raises
        VersionConflict when another process saved it in between, so at most one
        of several concurrent resumers gets a session. `claim=False` only loads
        (to inspect it); call `claim()` before drawing.
        """
        state = client.load(lock_key, operation_id)
        if state is None:
            return None
        session = cls(
            client, state, ttl_s=ttl_s, on_error=on_error, durability=durability,
            resend_deadline_s=resend_deadline_s,
        )  # fmt: skip
        if claim:
            session.claim()
        return session

    # --- the flow ---------------------------------------------------------------------

    def claim(self) -> int:
        """Take the operation: save it unchanged with the version last seen; returns the new version.

        Raises VersionConflict if anyone saved it since, OperationClosed if it was closed.
        """
        self._check_usable()
        candidate = self._state.copy()
        candidate.last_update_time = self._now(candidate)
        self._save(candidate)
        return self._state.version

    def record(self, result: DrawResult) -> int:
        """Save the outcome of the next draw; returns its 1-based draw index.

        An int is a range-draw result, a Prize a prize-draw result; a DrawError
        or an exception records a failed draw (it counts against total_count and
        grants nothing). Raises ValueError once every draw is recorded.

        The save is resent with the same token while the answer is retryable, up to
        `resend_deadline_s`. If no definite answer comes: OutcomeUnknown when the
        save may have been applied (the draw is in doubt: do not grant it now),
        else the error (the draw is not recorded). Either way, record the same
        result again (the same save is resent, so it cannot apply twice), or stop
        and leave the operation to `resume`, where every result in the state is
        owed to the player: grant idempotently, keyed by (operation_id, draw index).
        """
        self._check_usable()
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
        self._save(candidate)
        return index

    def complete(self, *, allow_partial: bool = False) -> DrawState:
        """Remove the finished operation; returns its final state (everything granted).

        Raises ValueError while draws remain, unless `allow_partial` (an
        unfinished operation is normally rolled back, so the rest is refunded).
        """
        if self._closed == "complete":
            return self.state
        self._check_usable()
        if not self._state.finished and not allow_partial:
            raise ValueError(
                f"{self.remaining} of {self._state.total_count} draws of {self._state.operation_id} "
                "are still to make; roll it back, or pass allow_partial=True"
            )
        self.client.complete(self._state.lock_key, self._state.operation_id)
        self._closed = "complete"
        return self.state

    def rollback(self, reason: str = "", *, token: str | None = None) -> Refund:
        """Remove the operation atomically; the Refund says what it had granted and who refunds.

        `Refund.final` True: this session pays the refund now, from `Refund.state` (the state
        removed from Redis). False: do not refund here: Redis was unreachable and the rollback
        is deferred (`cleanup == "deferred"`), or the refund was left to the outcome stream; a
        refund worker pays it from there. Repeating it returns the same Refund.

        The rollback goes out with one token per session (`rollback_token`, or `token`), resent
        while the answer is retryable. If no definite answer comes within `resend_deadline_s`,
        OutcomeUnknown: call `rollback` again later (same token, same answer). A process that may
        die between this call and paying should store `rollback_token` first and, after a crash,
        resend with it (`MultiDraw.resume(..., claim=False).rollback(token=...)` or
        `Client.rollback(..., token=...)`): the same answer comes back.
        """
        if self._refund is not None:
            return self._refund
        self._check_usable()
        if token is not None:
            self._rollback_token = token
        result = resend(
            self.resend_deadline_s,
            f"operation {self.operation_id}",
            lambda: self.client.rollback(
                self._state, reason=reason[:MAX_REASON_CHARS] or None, token=self.rollback_token
            ),
        )
        # The state Redis held is the authority; when none was stored, or the rollback is
        # deferred, what this session saved last is what it knows was granted.
        removed = result.state if result.state is not None else self.state
        self._closed = "rollback"
        self._refund = Refund(removed, result.cleanup, final=result.final)
        return self._refund

    @property
    def rollback_token(self) -> str:
        """The token this session's rollback goes out with (store it to resend after a crash)."""
        if self._rollback_token is None:
            self._rollback_token = secrets.token_hex(8)
        return self._rollback_token

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

    # --- context manager ----------------------------------------------------------------

    def __enter__(self) -> MultiDraw:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed is not None or self._lost is not None:
            return
        if exc is None:
            if self._state.finished:
                self.complete()
            return
        if self.on_error != "rollback" or not isinstance(exc, Exception):
            return
        if isinstance(exc, (VersionConflict, OperationClosed)):
            return  # someone else has the operation: it is not ours to roll back
        reason = f"error in multi-draw: {type(exc).__name__}: {exc}"
        try:
            self.rollback(reason)
        except DrawStateError as rollback_error:
            # The block's own exception is the one to propagate; the state stays for an operator.
            log.warning(
                "rollback on error failed; the operation is kept",
                extra={
                    "lock_key": self.lock_key,
                    "operation_id": self.operation_id,
                    "error": str(rollback_error),
                },
            )

    def __repr__(self) -> str:
        return (
            f"MultiDraw(lock_key={self.lock_key!r}, operation_id={self.operation_id!r}, "
            f"next_draw={self.next_draw_index}/{self.total_count}, version={self.version}, "
            f"closed={self._closed!r}, lost={self.lost})"
        )

    # --- plumbing -----------------------------------------------------------------------

    def _check_usable(self) -> None:
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

    @staticmethod
    def _now(state: DrawState) -> int:
        # last_update_time never goes below what is stored (another host's clock may run ahead).
        return max(int(time.time()), state.last_update_time, state.start_time)

    def _save(self, candidate: DrawState, *, expect_version: int | None = None) -> None:
        """Save `candidate` over the last saved state, resending retryable failures with one token."""
        expect = self._state.version if expect_version is None else expect_version
        data, token = self._request_for(candidate)
        try:
            result = resend(
                self.resend_deadline_s,
                f"operation {self.operation_id}",
                lambda: self.client.save(
                    data, expect_version=expect, ttl_s=self.ttl_s, token=token, durability=self.durability
                ),
            )
        except DrawStateError as exc:
            if isinstance(exc, (VersionConflict, OperationClosed)):
                self._lost = exc  # another process owns or closed it: stop here
            # A retryable failure may still have been applied: keep it to resend as is.
            self._unsaved = (data, token) if exc.retryable else None
            raise
        self._unsaved = None
        candidate.version = result.version
        candidate.last_update_time = data["last_update_time"]  # differs when a failed save was resent
        self._state = candidate

    def _request_for(self, candidate: DrawState) -> tuple[dict[str, Any], str]:
        """The state to send and its token: the failed save again if it holds the same draws."""
        data = candidate.to_dict()
        del data["version"]
        if self._unsaved is not None:
            previous, token = self._unsaved
            if {**previous, "last_update_time": 0} == {**data, "last_update_time": 0}:
                return previous, token
        return data, secrets.token_hex(8)
