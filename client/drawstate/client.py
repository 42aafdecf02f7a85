"""The blocking client a game process uses to talk to its local drawstate daemon.

Thread-safe: each call borrows one of up to `pool_size` connections, so threads sharing a
Client do not wait for each other (only for a free connection). A broken connection is
reopened and the call sent once more: every op is safe to repeat (saves and rollbacks carry a
token the daemon recognises; complete leaves a tombstone that answers a repeat the same way).
An optional `retry` policy resends retryable failures too. For asyncio, see drawstate.aio.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, overload

from drawstate import ops
from drawstate.appends import Bases
from drawstate.connection import Connection
from drawstate.errors import BaseUnknown, InternalError, SidecarTimeout, SidecarUnavailable, error_from_wire
from drawstate.limits import DEFAULT_LIMITS, MAX_FRAME_BYTES, Limits
from drawstate.model import DrawState
from drawstate.paths import SOCKET_ENV, implicit_socket_path
from drawstate.resend import Retry, resend
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

#: Seconds one call may take end to end, by default (the daemon answers well within it).
DEFAULT_TIMEOUT_S = 1.0
#: Connections one Client opens at most: as many calls run at once, from as many threads.
DEFAULT_POOL_SIZE = 8

log = logging.getLogger("drawstate.client")


class Client:
    """Blocking, thread-safe client of the local daemon.

    Args:
        socket_path: The daemon's socket. Default: `$DRAWSTATE_SOCKET`, else
            `$XDG_RUNTIME_DIR/drawstate.sock`, else `/tmp/drawstate-<uid>/drawstate.sock` (a
            default directory that another user owns or can write is refused).
        timeout: Seconds each call may take end to end (> 0), unless the call says otherwise.
        pool_size: Connections opened at most, so this many calls run at once across threads.
        retry: Resend a call that failed with a retryable error, by this policy (the same
            request and token each time). None: only the one resend after a broken connection.
        limits: The DrawState limits that returned states are checked against.
        max_frame_bytes: The largest reply frame accepted.
    """

    def __init__(
        self,
        socket_path: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        retry: Retry | None = None,
        limits: Limits = DEFAULT_LIMITS,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        timeout = ops.checked_timeout(timeout)
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, got {pool_size!r}")
        explicit = socket_path or os.environ.get(SOCKET_ENV)
        self.socket_path = str(explicit or implicit_socket_path())
        # Only the default directory is checked: an explicit path is the operator's choice.
        self._default_dir = None if explicit else Path(self.socket_path).parent
        self.timeout = timeout
        self.pool_size = pool_size
        self.retry = retry
        self.limits = limits
        self._max_frame_bytes = max_frame_bytes
        self._idle: list[Connection] = []
        self._idle_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        #: The last save of each operation, so the next sends only the draws it adds (appends.py).
        self._bases = Bases()

    # --- the ops ---------------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> Ping:
        """Whether the daemon answers, and whether its Redis does (`Ping.redis`)."""
        return ops.read_ping(self._call(ops.ping(), timeout))

    def save(
        self,
        state: DrawState | Mapping[str, Any],
        *,
        expect_version: int | None = None,
        ttl_s: int | None = None,
        token: str | None = None,
        durability: Durability | None = None,
        timeout: float | None = None,
    ) -> SaveResult:
        """Save one operation's state; the new version is in the result (`state` is not changed).

        The daemon checks every rule (InvalidDrawState names what is wrong); checking here too
        would only double the cost of each save. `DrawState.validate()` checks locally. A
        DrawState saved again sends only the draws added since its last save (appends.py).

        Args:
            state: The state, as a DrawState or its dict form. Its `version` is ignored.
            expect_version: 0 creates only; N requires stored version N (else VersionConflict).
            ttl_s: Seconds the operation lives after this save (default: the daemon's `--ttl`).
            token: This save's token; a resend with it is answered as the first (default: a new one).
            durability: "ack" (the primary took it) or "replicated" (replicas did too).
            timeout: Seconds for this call, instead of the client's.
        """
        plan = self._bases.plan(
            state, expect_version=expect_version, ttl_s=ttl_s, token=token, durability=durability
        )
        try:
            try:
                reply = self._call(plan.request, timeout)
            except BaseUnknown:  # it sent only the new draws, to a daemon that forgot the rest
                reply = self._call(plan.whole(), plan.remaining(timeout or self.timeout))
        except BaseException:
            plan.failed()
            raise
        plan.saved(reply)
        return ops.read_save(reply)

    def load(
        self, lock_key: str, operation_id: str | None = None, *, timeout: float | None = None
    ) -> DrawState | None:
        """One operation's state, or the newest live one of `lock_key`; None if there is none.

        Args:
            lock_key: Whose operations (e.g. "player:1001").
            operation_id: Which one; None for the newest live one.
            timeout: Seconds for this call, instead of the client's.
        """
        return ops.read_state(self._call(ops.load(lock_key, operation_id), timeout).get("state"), self.limits)

    @overload
    def rollback(
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
    def rollback(
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

    def rollback(
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
        """End an operation and learn who pays its refund (`RollbackResult.final`).

        Called as `rollback(lock_key, operation_id)`, or `rollback(state)` with the state the
        caller holds (it is checked; its ids name the operation).

        Args:
            reason: Recorded with the outcome event (at most 512 chars).
            token: Names this caller: reuse it to resend the same rollback and get the same
                answer (default: a new one per call). Another caller's token, after the
                operation was rolled back, gets OperationClosed: it must not refund. A rollback
                this client had to send more than once (a broken connection, `retry=`) raises
                OutcomeUnknown rather than return "deferred"; after a call with your token
                raised, treat a "deferred" answer to your own resend the same way (docs/recovery.md).
            refund_by: "caller" (the default: told `final`, this caller pays) or "stream" (this
                caller will not pay: a refund worker pays it from the outcome stream; an
                operator's sweep, say).
            expect_version: Roll back only if the stored version is this one, else VersionConflict
                (an operator's sweep skips an operation a game resumed meanwhile). Never deferred:
                with Redis unreachable it is RedisUnavailable, to resend.
            timeout: Seconds for this call, instead of the client's.
        """
        request = ops.rollback(
            target,
            operation_id,
            reason=reason,
            token=token,
            refund_by=refund_by,
            expect_version=expect_version,
        )
        sent: list[None] = []
        result = ops.read_rollback(self._call(request, timeout, sent), request, self.limits)
        return ops.judge_rollback_resent(result, len(sent))

    def complete(self, lock_key: str, operation_id: str, *, timeout: float | None = None) -> bool:
        """End a finished operation; True if its state was still stored.

        Args:
            lock_key: Whose operation.
            operation_id: Which one.
            timeout: Seconds for this call, instead of the client's.
        """
        return ops.read_complete(self._call(ops.complete(lock_key, operation_id), timeout))

    def pending(
        self,
        lock_key: str | None = None,
        *,
        older_than_s: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> PendingPage:
        """One page of live operations (running, or interrupted and waiting for resume or rollback).

        Args:
            lock_key: Only this lock key's (ordered by operation id); None walks every lock key.
            older_than_s: Only those not saved for this many seconds.
            limit: At most this many items (1-1000, default 100).
            cursor: The previous page's `cursor`, to go on.
            timeout: Seconds for this call, instead of the client's.
        """
        return ops.read_pending(self._call(ops.pending(lock_key, older_than_s, limit, cursor), timeout))

    def iter_pending(
        self, lock_key: str | None = None, *, older_than_s: int | None = None, limit: int = 100
    ) -> Iterator[PendingItem]:
        """Every live operation, page after page, each once (a SCAN walk may repeat one)."""
        cursor: str | None = None
        seen: set[tuple[str, str]] = set()
        while True:
            page = self.pending(lock_key, older_than_s=older_than_s, limit=limit, cursor=cursor)
            for item in page.items:
                if (item.lock_key, item.operation_id) not in seen:
                    seen.add((item.lock_key, item.operation_id))
                    yield item
            if page.cursor is None:
                return
            cursor = page.cursor

    def stats(self, *, timeout: float | None = None) -> Stats:
        """The daemon's counters: requests, latency, Redis, deferred rollbacks, the outcome stream."""
        return ops.read_stats(self._call(ops.stats(), timeout))

    def audit(
        self,
        lock_key: str | None = None,
        *,
        since: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        newest: bool = False,
        timeout: float | None = None,
    ) -> AuditPage:
        """One page of the outcome stream as history, oldest first (nothing is acknowledged).

        Args:
            lock_key: Only this lock key's events.
            since: Unix seconds: events from then on (ignored with `cursor`).
            limit: At most this many (1-1000, default 100).
            cursor: The previous page's `cursor`, to go on.
            newest: The newest `limit` events instead (like `tail -n`); the page's `cursor` is
                then where to follow from. Takes neither `since` nor `cursor`.
            timeout: Seconds for this call, instead of the client's.
        """
        return ops.read_audit(self._call(ops.audit(lock_key, since, limit, cursor, newest), timeout))

    def iter_audit(
        self, lock_key: str | None = None, *, since: int | None = None, limit: int = 100
    ) -> Iterator[OutcomeEvent]:
        """Every event from `since` on, page after page."""
        cursor: str | None = None
        while True:
            page = self.audit(lock_key, since=since if cursor is None else None, limit=limit, cursor=cursor)
            yield from page.items
            if page.cursor is None:
                return
            cursor = page.cursor

    def outcomes(
        self,
        group: str,
        consumer: str,
        *,
        limit: int | None = None,
        block_ms: int | None = None,
        claim_idle_ms: int | None = None,
        timeout: float | None = None,
    ) -> list[OutcomeEvent]:
        """Events for `consumer` of consumer group `group`: its unacknowledged ones first, then new.

        Each event stays pending for this consumer until `ack`.

        Args:
            group: The consumer group (refund workers share one); created at its first read.
            consumer: This worker's name within the group.
            limit: At most this many events (1-1000, default 100).
            block_ms: With none to deliver, wait this long for a new one (the call's timeout
                grows by as much).
            claim_idle_ms: Also take over events another consumer left unacknowledged this long.
            timeout: Seconds for this call, instead of the client's.
        """
        if block_ms and timeout is None:
            timeout = ops.outcomes_timeout(self.timeout, block_ms)
        request = ops.outcomes(group, consumer, limit, block_ms, claim_idle_ms)
        return ops.read_outcomes(self._call(request, timeout))

    def ack(self, group: str, ids: Sequence[str], *, timeout: float | None = None) -> int:
        """Acknowledge handled events of `group`; returns how many were pending."""
        return ops.read_ack(self._call(ops.ack(group, ids), timeout))

    def iter_outcomes(
        self,
        group: str,
        consumer: str,
        *,
        block_ms: int = 1000,
        claim_idle_ms: int | None = None,
        limit: int = 100,
        stop_when_idle: bool = False,
    ) -> Iterator[OutcomeEvent]:
        """Every event for this consumer, each acknowledged once the loop body that got it returns.

        ``for event in client.iter_outcomes("refunds", "worker-1"): pay(event)`` acknowledges an
        event only when the loop asks for the next one, so an exception (or a crash) in `pay`
        leaves it pending: it comes again. Runs until the caller stops, or until a wait of
        `block_ms` brings nothing when `stop_when_idle`.
        """
        while True:
            events = self.outcomes(
                group, consumer, limit=limit, block_ms=block_ms, claim_idle_ms=claim_idle_ms
            )
            if not events and stop_when_idle:
                return
            for event in events:
                yield event
                self.ack(group, [event.id])

    def close(self) -> None:
        """Close the idle connections (a later call opens new ones)."""
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.socket_path!r}, timeout={self.timeout}, pool_size={self.pool_size})"

    # --- plumbing ----------------------------------------------------------------------

    def _call(
        self, request: dict[str, Any], timeout: float | None, sent: list[None] | None = None
    ) -> dict[str, Any]:
        """One request, resent as the retry policy says; `sent` gets an entry each time it goes out."""
        if timeout is not None:
            timeout = ops.checked_timeout(timeout, "the call's timeout")
        if self.retry is None:
            return self._call_once(request, timeout, sent)
        return resend(self.retry, f"{request['op']} request", lambda: self._call_once(request, timeout, sent))

    def _call_once(
        self, request: dict[str, Any], timeout: float | None, sent: list[None] | None = None
    ) -> dict[str, Any]:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        if not self._slots.acquire(timeout=max(0.0, budget)):
            raise SidecarUnavailable(
                f"all {self.pool_size} connections of this client stayed busy for {budget} s"
            )
        try:
            reply = self._exchange(request, deadline, sent)
        finally:
            self._slots.release()
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        if not isinstance(error, dict):
            raise InternalError(f"malformed reply from daemon: {reply!r:.200}")
        raise error_from_wire(error)

    def _exchange(self, request: dict[str, Any], deadline: float, sent: list[None] | None) -> dict[str, Any]:
        """One request on a pooled connection; a broken pooled one gets it once more on a new one."""
        connection, fresh = self._borrow(deadline)
        try:
            if sent is not None:
                sent.append(None)
            reply = connection.round_trip(request, deadline)
        except OSError as exc:  # reset, broken pipe: the daemon restarted, or closed an idle connection
            if fresh or time.monotonic() >= deadline:
                raise SidecarTimeout(
                    f"connection to {self.socket_path} lost before the reply: {exc}"
                ) from exc
            log.debug("resending %s on a new connection: the pooled one broke (%s)", request.get("op"), exc)
            try:
                connection = self._open(deadline)
            except SidecarUnavailable as unavailable:
                # The first attempt went out before its connection broke: it may have taken effect.
                raise SidecarTimeout(f"{unavailable} (after the first attempt went out)") from unavailable
            try:
                if sent is not None:
                    sent.append(None)
                reply = connection.round_trip(request, deadline)
            except OSError as again:
                raise SidecarTimeout(
                    f"connection to {self.socket_path} lost before the reply: {again}"
                ) from again
        self._give_back(connection)
        return reply

    def _borrow(self, deadline: float) -> tuple[Connection, bool]:
        with self._idle_lock:
            if self._idle:
                return self._idle.pop(), False
        return self._open(deadline), True

    def _open(self, deadline: float) -> Connection:
        return Connection(self.socket_path, self._default_dir, self._max_frame_bytes, deadline)

    def _give_back(self, connection: Connection) -> None:
        if connection.closed:
            return
        with self._idle_lock:
            self._idle.append(connection)
