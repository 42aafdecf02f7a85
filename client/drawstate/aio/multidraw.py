"""AsyncMultiDraw: MultiDraw for asyncio, with the same rules (session.py holds them for both).

    async with AsyncMultiDraw.start(client, "player:1001", 10, metadata=...) as draw:
        while not draw.finished:
            await draw.record(roll())   # saved: now grant it
    # leaving the block completed the operation

`start` and `resume` can also be awaited on their own: `draw = await AsyncMultiDraw.start(...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar

from drawstate.aio.client import AsyncClient
from drawstate.errors import DrawStateError
from drawstate.model import DrawState
from drawstate.refund import Refund
from drawstate.resend import RESEND_DEADLINE_S, aresend
from drawstate.results import Durability, RollbackResult
from drawstate.session import DrawResult, OnError, SessionCore, new_state

log = logging.getLogger("drawstate.aio.multidraw")
S = TypeVar("S")


class _Opening(Generic[S]):
    """What `start` and `resume` return: await it for the session, or enter it with `async with`."""

    def __init__(self, opening: Callable[[], Awaitable[S]]) -> None:
        self._opening = opening
        self._session: S | None = None

    def __await__(self) -> Generator[Any, None, S]:
        return self._opening().__await__()

    async def __aenter__(self) -> S:
        self._session = await self._opening()
        if self._session is None:
            raise LookupError("nothing to resume: use `await AsyncMultiDraw.resume(...)` and check for None")
        return await self._session.__aenter__()  # type: ignore[attr-defined, no-any-return]

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._session is not None
        await self._session.__aexit__(exc_type, exc, tb)  # type: ignore[attr-defined]


class AsyncMultiDraw(SessionCore):
    """One multi-draw operation on asyncio; see MultiDraw for the rules, which are the same.

    Args:
        client: The AsyncClient it calls.
        state, ttl_s, on_error, durability, resend_deadline_s: As for MultiDraw.
    """

    def __init__(
        self,
        client: AsyncClient,
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

    @classmethod
    def start(
        cls,
        client: AsyncClient,
        lock_key: str,
        total_count: int,
        *,
        metadata: Mapping[str, str] | None = None,
        operation_id: str | None = None,
        ttl_s: int | None = None,
        on_error: OnError = "keep",
        durability: Durability | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> _Opening[AsyncMultiDraw]:
        """Save the first state of a new operation (see MultiDraw.start); await it or `async with` it."""

        async def opening() -> AsyncMultiDraw:
            state = new_state(lock_key, total_count, metadata, operation_id)
            session = cls(
                client, state, ttl_s=ttl_s, on_error=on_error, durability=durability,
                resend_deadline_s=resend_deadline_s,
            )  # fmt: skip
            await session._save(state.copy(), expect_version=0)
            return session

        return _Opening(opening)

    @classmethod
    def resume(
        cls,
        client: AsyncClient,
        lock_key: str,
        operation_id: str | None = None,
        *,
        claim: bool = True,
        ttl_s: int | None = None,
        on_error: OnError = "keep",
        durability: Durability | None = None,
        resend_deadline_s: float = RESEND_DEADLINE_S,
    ) -> _Opening[AsyncMultiDraw | None]:
        """Load (and by default claim) an interrupted operation, or None (see MultiDraw.resume)."""

        async def opening() -> AsyncMultiDraw | None:
            state = await client.load(lock_key, operation_id)
            if state is None:
                return None
            session = cls(
                client, state, ttl_s=ttl_s, on_error=on_error, durability=durability,
                resend_deadline_s=resend_deadline_s,
            )  # fmt: skip
            if claim:
                await session.claim()
            return session

        return _Opening(opening)

    async def claim(self) -> int:
        """Take the operation over (see MultiDraw.claim); returns the new version."""
        await self._save(self.claim_candidate())
        return self._state.version

    async def record(self, result: DrawResult) -> int:
        """Save the next draw's outcome; returns its index. Grant it only after this returns.

        As MultiDraw.record. A record cancelled mid-save (a `wait_for` timeout, a cancelled task)
        may have been applied: record the same result again, and the same save is resent.
        """
        candidate, index = self.record_candidate(result)
        await self._save(candidate)
        return index

    async def complete(self, *, allow_partial: bool = False) -> DrawState:
        """End the finished operation; returns its final state."""
        if not self.check_completable(allow_partial):
            await self.client.complete(self._state.lock_key, self._state.operation_id)
            self._closed = "complete"
        return self.state

    async def rollback(self, reason: str = "", *, token: str | None = None) -> Refund:
        """End the operation; the Refund says what was granted and who pays the rest (`final`)."""
        if self._refund is not None:
            return self._refund
        trimmed = self.rollback_reason(reason, token)

        async def attempt() -> RollbackResult:
            try:
                result = await self.client.rollback(self._state, reason=trimmed, token=self.rollback_token)
            except DrawStateError as exc:
                self.rollback_failed(exc)
                raise
            return self.judge_rollback(result)

        return self.rolled_back(await aresend(self.retry, f"operation {self.operation_id}", attempt))

    async def __aenter__(self) -> AsyncMultiDraw:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        action = self.on_exit(exc)
        if action == "complete":
            await self.complete()
        elif action == "rollback":
            try:
                await self.rollback(f"error in multi-draw: {type(exc).__name__}: {exc}")
            except DrawStateError as rollback_error:
                log.warning(
                    "rollback on error failed; the operation is kept",
                    extra={
                        "lock_key": self.lock_key,
                        "operation_id": self.operation_id,
                        "error": str(rollback_error),
                    },
                )

    async def _save(self, candidate: DrawState, *, expect_version: int | None = None) -> None:
        plan = self.plan_save(candidate, expect_version)
        try:
            result = await aresend(
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
