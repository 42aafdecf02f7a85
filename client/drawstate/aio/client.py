"""AsyncClient: the asyncio client of the local daemon, with the blocking Client's methods, errors and rules.

Every call of every task goes over one connection, pipelined: a thousand concurrent saves from
one event loop share it, each with its own timeout. A call that times out or is cancelled leaves
the connection in step (its late reply is dropped by id). A broken connection is reopened and
the call sent once more, as the blocking client does; `retry=` resends retryable failures too.
Works on asyncio's own loop and on uvloop's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, overload

from drawstate import ops
from drawstate.aio.connection import BadFrame, MultiplexedConnection
from drawstate.appends import Bases
from drawstate.client import DEFAULT_TIMEOUT_S
from drawstate.errors import BaseUnknown, InternalError, SidecarTimeout, SidecarUnavailable, error_from_wire
from drawstate.limits import DEFAULT_LIMITS, MAX_FRAME_BYTES, Limits
from drawstate.model import DrawState
from drawstate.paths import SOCKET_ENV, implicit_socket_path
from drawstate.resend import Retry, aresend
from drawstate.results import (
    AuditPage,
    Durability,
    OutcomeEvent,
    PendingItem,
    PendingPage,
    Ping,
    RefundBy,
    RollbackResult,
    SaveResult,
    Stats,
)

log = logging.getLogger("drawstate.aio")


class AsyncClient:
    """asyncio client of the local daemon; safe to share between the tasks of one event loop.

    Args:
        socket_path: As for Client (default `$DRAWSTATE_SOCKET`, then the default path, whose
            directory must be this user's alone).
        timeout: Seconds each call may take end to end (> 0), unless the call says otherwise.
        retry: Resend a call that failed with a retryable error, by this policy.
        limits: The DrawState limits that returned states are checked against.
        max_frame_bytes: The largest reply frame accepted.

    Use it as `async with AsyncClient() as client:`, or call `await client.close()`.
    """

    def __init__(
        self,
        socket_path: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: Retry | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        timeout = ops.checked_timeout(timeout)
        explicit = socket_path or os.environ.get(SOCKET_ENV)
        self.socket_path = str(explicit or implicit_socket_path())
        self._default_dir = None if explicit else Path(self.socket_path).parent
        self.timeout = timeout
        self.retry = retry
        self.limits = limits
        self._max_frame_bytes = max_frame_bytes
        self._connection: MultiplexedConnection | None = None
        self._connecting: asyncio.Lock | None = None
        #: The last save of each operation, so the next sends only the draws it adds (appends.py).
        self._bases = Bases()

    # --- the ops ---------------------------------------------------------------------

    async def ping(self, *, timeout: float | None = None) -> Ping:
        """Whether the daemon answers, and whether its Redis does."""
        return ops.read_ping(await self._call(ops.ping(), timeout))

    async def save(
        self,
        state: DrawState | Mapping[str, Any],
        *,
        expect_version: int | None = None,
        ttl_s: int | None = None,
        token: str | None = None,
        durability: Durability | None = None,
        timeout: float | None = None,
    ) -> SaveResult:
        """Save one operation's state (see Client.save for the arguments)."""
        plan = self._bases.plan(
            state, expect_version=expect_version, ttl_s=ttl_s, token=token, durability=durability
        )
        try:
            try:
                reply = await self._call(plan.request, timeout)
            except BaseUnknown:  # it sent only the new draws, to a daemon that forgot the rest
                reply = await self._call(plan.whole(), plan.remaining(timeout or self.timeout))
        except BaseException:
            plan.failed()
            raise
        plan.saved(reply)
        return ops.read_save(reply)

    async def load(
        self, lock_key: str, operation_id: str | None = None, *, timeout: float | None = None
    ) -> DrawState | None:
        """One operation's state, or the newest live one of `lock_key`; None if there is none."""
        reply = await self._call(ops.load(lock_key, operation_id), timeout)
        return ops.read_state(reply.get("state"), self.limits)

    @overload
    async def rollback(
        self,
        lock_key: str,
        operation_id: str,
        /,
        *,
        reason: str | None = None,
        token: str | None = None,
        refund_by: RefundBy | None = None,
        expect_version: int | None = None,
        timeout: float | None = None,
    ) -> RollbackResult: ...

    @overload
    async def rollback(
        self,
        state: DrawState | Mapping[str, Any],
        /,
        *,
        reason: str | None = None,
        token: str | None = None,
        refund_by: RefundBy | None = None,
        expect_version: int | None = None,
        timeout: float | None = None,
    ) -> RollbackResult: ...

    async def rollback(
        self,
        target: str | DrawState | Mapping[str, Any],
        operation_id: str | None = None,
        /,
        *,
        reason: str | None = None,
        token: str | None = None,
        refund_by: RefundBy | None = None,
        expect_version: int | None = None,
        timeout: float | None = None,
    ) -> RollbackResult:
        """End an operation and learn who pays its refund (see Client.rollback)."""
        request = ops.rollback(
            target,
            operation_id,
            reason=reason,
            token=token,
            refund_by=refund_by,
            expect_version=expect_version,
        )
        sent: list[None] = []
        result = ops.read_rollback(await self._call(request, timeout, sent), request, self.limits)
        return ops.judge_rollback_resent(result, len(sent))

    async def complete(self, lock_key: str, operation_id: str, *, timeout: float | None = None) -> bool:
        """End a finished operation; True if its state was still stored."""
        return ops.read_complete(await self._call(ops.complete(lock_key, operation_id), timeout))

    async def pending(
        self,
        lock_key: str | None = None,
        *,
        older_than_s: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> PendingPage:
        """One page of live operations (see Client.pending)."""
        return ops.read_pending(await self._call(ops.pending(lock_key, older_than_s, limit, cursor), timeout))

    async def iter_pending(
        self, lock_key: str | None = None, *, older_than_s: int | None = None, limit: int = 100
    ) -> AsyncIterator[PendingItem]:
        """Every live operation, page after page, each once."""
        cursor: str | None = None
        seen: set[tuple[str, str]] = set()
        while True:
            page = await self.pending(lock_key, older_than_s=older_than_s, limit=limit, cursor=cursor)
            for item in page.items:
                if (item.lock_key, item.operation_id) not in seen:
                    seen.add((item.lock_key, item.operation_id))
                    yield item
            if page.cursor is None:
                return
            cursor = page.cursor

    async def stats(self, *, timeout: float | None = None) -> Stats:
        """The daemon's counters."""
        return ops.read_stats(await self._call(ops.stats(), timeout))

    async def audit(
        self,
        lock_key: str | None = None,
        *,
        since: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        newest: bool = False,
        timeout: float | None = None,
    ) -> AuditPage:
        """One page of the outcome stream as history (see Client.audit)."""
        return ops.read_audit(await self._call(ops.audit(lock_key, since, limit, cursor, newest), timeout))

    async def iter_audit(
        self, lock_key: str | None = None, *, since: int | None = None, limit: int = 100
    ) -> AsyncIterator[OutcomeEvent]:
        """Every event from `since` on, page after page."""
        cursor: str | None = None
        while True:
            page = await self.audit(
                lock_key, since=since if cursor is None else None, limit=limit, cursor=cursor
            )
            for item in page.items:
                yield item
            if page.cursor is None:
                return
            cursor = page.cursor

    async def outcomes(
        self,
        group: str,
        consumer: str,
        *,
        limit: int | None = None,
        block_ms: int | None = None,
        claim_idle_ms: int | None = None,
        timeout: float | None = None,
    ) -> list[OutcomeEvent]:
        """Events for `consumer` of consumer group `group` (see Client.outcomes)."""
        if block_ms and timeout is None:
            timeout = ops.outcomes_timeout(self.timeout, block_ms)
        return ops.read_outcomes(
            await self._call(ops.outcomes(group, consumer, limit, block_ms, claim_idle_ms), timeout)
        )

    async def ack(self, group: str, ids: Sequence[str], *, timeout: float | None = None) -> int:
        """Acknowledge handled events of `group`; returns how many were pending."""
        return ops.read_ack(await self._call(ops.ack(group, ids), timeout))

    async def iter_outcomes(
        self,
        group: str,
        consumer: str,
        *,
        block_ms: int = 1000,
        claim_idle_ms: int | None = None,
        limit: int = 100,
        stop_when_idle: bool = False,
    ) -> AsyncIterator[OutcomeEvent]:
        """Every event for this consumer, each acknowledged once the loop body that got it returns."""
        while True:
            events = await self.outcomes(
                group, consumer, limit=limit, block_ms=block_ms, claim_idle_ms=claim_idle_ms
            )
            if not events and stop_when_idle:
                return
            for event in events:
                yield event
                await self.ack(group, [event.id])

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({self.socket_path!r}, timeout={self.timeout})"

    # --- plumbing ----------------------------------------------------------------------

    async def _call(
        self, request: dict[str, Any], timeout: float | None, sent: list[None] | None = None
    ) -> dict[str, Any]:
        """One request, resent as the retry policy says; `sent` gets an entry each time it goes out."""
        if timeout is not None:
            timeout = ops.checked_timeout(timeout, "the call's timeout")
        if self.retry is None:
            return await self._call_once(request, timeout, sent)
        return await aresend(
            self.retry, f"{request['op']} request", lambda: self._call_once(request, timeout, sent)
        )

    async def _call_once(
        self, request: dict[str, Any], timeout: float | None, sent: list[None] | None = None
    ) -> dict[str, Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        reply = await self._exchange(request, deadline, sent)
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        if not isinstance(error, dict):
            raise InternalError(f"malformed reply from daemon: {reply!r:.200}")
        raise error_from_wire(error)

    async def _exchange(
        self, request: dict[str, Any], deadline: float, sent: list[None] | None
    ) -> dict[str, Any]:
        connection, fresh = await self._connected(deadline)
        try:
            if sent is not None:
                sent.append(None)
            return await connection.request(request, deadline)
        except TimeoutError as exc:
            raise SidecarTimeout(
                f"no reply from the daemon at {self.socket_path} within the call timeout; the request "
                "may have taken effect: resend it unchanged"
            ) from exc
        except BadFrame as exc:
            raise InternalError(str(exc)) from exc
        except ConnectionError as exc:
            if fresh or time.monotonic() >= deadline:
                raise SidecarTimeout(
                    f"connection to {self.socket_path} lost before the reply: {exc}"
                ) from exc
        # The connection was an old one the daemon closed (a restart): once more on a new one.
        log.debug("resending %s on a new connection: the old one broke", request.get("op"))
        try:
            connection, _ = await self._connected(deadline)
        except SidecarUnavailable as unavailable:
            raise SidecarTimeout(f"{unavailable} (after the first attempt went out)") from unavailable
        try:
            if sent is not None:
                sent.append(None)
            return await connection.request(request, deadline)
        except TimeoutError as exc:
            raise SidecarTimeout(
                f"no reply from the daemon at {self.socket_path} within the call timeout"
            ) from exc
        except ConnectionError as exc:
            raise SidecarTimeout(f"connection to {self.socket_path} lost before the reply: {exc}") from exc

    async def _connected(self, deadline: float) -> tuple[MultiplexedConnection, bool]:
        """The shared connection, opened (once, whoever asks first) when there is none."""
        if self._connection is not None and not self._connection.closed:
            return self._connection, False
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is not None and not self._connection.closed:
                return self._connection, False
            self._connection = await MultiplexedConnection.open(
                self.socket_path, self._default_dir, self._max_frame_bytes, deadline - time.monotonic()
            )
            return self._connection, True
