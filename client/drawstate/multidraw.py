"""MultiDraw: one multi-draw operation end to end: start, record each draw, complete, resume, roll back.

Every save after the first carries the version the session last saw, so two
processes never both write one operation; every save carries a token that its
resends reuse, so a repeat never applies twice. What the session decides lives in
session.py, shared with drawstate.aio.AsyncMultiDraw; this module adds the calls.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType

from drawstate.client import Client
from drawstate.errors import DrawStateError
from drawstate.model import DrawState
from drawstate.refund import Refund
from drawstate.resend import RESEND_DEADLINE_S, resend
from drawstate.results import Durability, RollbackResult
from drawstate.session import (
    ON_ERROR_POLICIES,
    DrawResult,
    OnError,
    SessionCore,
    new_state,
)

__all__ = ["ON_ERROR_POLICIES", "DrawResult", "MultiDraw", "OnError"]

log = logging.getLogger("drawstate.multidraw")


class MultiDraw(SessionCore):
    """One multi-draw operation, driven by one game process.

    Make one with `MultiDraw.start` (a new operation) or `MultiDraw.resume` (an
    interrupted one), then call `record(result)` after each draw, and grant the
    draw to the player only once `record` has returned: a draw is safe only when
    it is saved. Finish with `complete()` (all draws made), or `rollback(reason)`
    (end it; the Refund says what was granted and who pays the rest).

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

    Args:
        client: The Client it calls.
        state: The operation as last saved (use `start` or `resume` rather than this).
        ttl_s: The lifetime of the operation after each save (None: the daemon's `--ttl`).
        on_error: What an exception leaving the `with` block does: "keep" or "rollback".
        durability: Passed to every save: "ack" or "replicated".
        resend_deadline_s: How long a save or a rollback is resent, with the same token, while
            its answer is retryable; past it, OutcomeUnknown when it may have taken effect.

    A session is one flow of one process: do not share it between threads.
    """

    def __init__(
        self,
        client: Client,
        state: DrawState,
        *,
        ttl_s: int | None = None,
        on_error: OnError = "keep",
        durability: Durability | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> None:
        super().__init__(
            state, ttl_s=ttl_s, on_error=on_error, durability=durability, resend_deadline_s=resend_deadline_s
        )
        self.client = client

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
        durability: Durability | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> MultiDraw:
        """Save the first state (no draws yet) of a new operation, before the first draw.

        Args:
            client: The Client it calls.
            lock_key: Whose operation (e.g. "player:1001").
            total_count: Draws paid for (1-10000).
            metadata: What a refund needs (user id, banner, price paid): fixed from now on.
            operation_id: Its id (default: a new `YYYYMMDD_HHMMSS_<8 hex>`).
            ttl_s, on_error, durability, resend_deadline_s: As for the constructor.

        Raises InvalidState (a ValueError) for a state that breaks a rule, before anything is
        sent; VersionConflict when `operation_id` exists already (the save is create-only).
        """
        state = new_state(lock_key, total_count, metadata, operation_id)
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
        durability: Durability | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> MultiDraw | None:
        """Load an interrupted operation (the newest live one of `lock_key` without an id).

        Returns None when there is none (never started, completed, rolled back, or expired).
        `next_draw_index` says which draw comes next.

        Args:
            claim: Claim it before returning (the default): raises VersionConflict when
                another process saved it in between, so at most one of several concurrent
                resumers gets a session. False only loads it (to inspect it); call `claim()`
                before drawing.
            client, lock_key, operation_id, ttl_s, on_error, durability, resend_deadline_s:
                As for `start`.
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

        Raises VersionConflict if anyone saved it since, OperationClosed if it ended.
        """
        self._save(self.claim_candidate())
        return self._state.version

    def record(self, result: DrawResult) -> int:
        """Save the outcome of the next draw; returns its 1-based draw index.

        Args:
            result: An int (a range-draw result), a Prize (a prize-draw result), or a failed
                draw: a DrawError, or the exception (it counts against total_count and grants
                nothing).

        Raises ValueError once every draw is recorded. The save is resent with the same token
        while the answer is retryable, up to `resend_deadline_s`. If no definite answer comes:
        OutcomeUnknown when the save may have been applied (the draw is in doubt: do not grant
        it now; an `internal` answer is one), else the error (the draw is not recorded). Either
        way, record the same result again (the same save is resent, so it cannot apply twice),
        or stop and leave the operation to `resume`, where every result in the state is owed to
        the player: grant idempotently, keyed by (operation_id, draw index).
        """
        candidate, index = self.record_candidate(result)
        self._save(candidate)
        return index

    def complete(self, *, allow_partial: bool = False) -> DrawState:
        """End the finished operation; returns its final state (everything granted).

        Args:
            allow_partial: End it with draws still to make (they are refunded through the
                outcome stream). Without it, ValueError while draws remain: roll it back instead.
        """
        if not self.check_completable(allow_partial):
            self.client.complete(self._state.lock_key, self._state.operation_id)
            self._closed = "complete"
        return self.state

    def rollback(self, reason: str = "", *, token: str | None = None) -> Refund:
        """End the operation; the Refund says what it had granted and who refunds the rest.

        `Refund.final` True: this session pays the refund now, from `Refund.state` (the state
        removed from Redis). False: do not refund here: Redis was unreachable and the rollback
        is deferred (`cleanup == "deferred"`), or the refund was left to the outcome stream; a
        refund worker pays it from there. Repeating it returns the same Refund.

        Args:
            reason: Recorded with the outcome event.
            token: This rollback's token (default: `rollback_token`, one per session). A process
                that may die between this call and paying should store `rollback_token` first
                and, after a crash, resend with it (`MultiDraw.resume(..., claim=False)
                .rollback(token=...)`): the same answer comes back.

        If no definite answer comes within `resend_deadline_s`: OutcomeUnknown; call `rollback`
        again later (same token, same answer).
        """
        if self._refund is not None:
            return self._refund
        trimmed = self.rollback_reason(reason, token)

        def attempt() -> RollbackResult:
            try:
                result = self.client.rollback(self._state, reason=trimmed, token=self.rollback_token)
            except DrawStateError as exc:
                self.rollback_failed(exc)
                raise
            return self.judge_rollback(result)

        return self.rolled_back(resend(self.retry, f"operation {self.operation_id}", attempt))

    # --- context manager ----------------------------------------------------------------

    def __enter__(self) -> MultiDraw:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        action = self.on_exit(exc)
        if action == "complete":
            self.complete()
        elif action == "rollback":
            try:
                self.rollback(f"error in multi-draw: {type(exc).__name__}: {exc}")
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

    # --- plumbing -----------------------------------------------------------------------

    def _save(self, candidate: DrawState, *, expect_version: int | None = None) -> None:
        """Save `candidate` over the last saved state, resending retryable failures with one token."""
        plan = self.plan_save(candidate, expect_version)
        try:
            result = resend(
                self.retry,
                f"operation {self.operation_id}",
                lambda: self.client.save(
                    plan.state,
                    expect_version=plan.expect_version,
                    ttl_s=self.ttl_s,
                    token=plan.token,
                    durability=self.durability,
                ),
            )
        except DrawStateError as exc:
            self.save_failed(plan, exc)
            raise
        except BaseException:
            self.save_interrupted(plan)
            raise
        self.saved(plan, result.version)
