"""The blocking client a game process uses to talk to its local drawstate daemon.

One Unix socket per Client, guarded by a lock so threads can share it. A broken
connection is reopened and the call sent once more: every op is safe to repeat
(saves carry a token the daemon deduplicates on; rollback and complete leave a
tombstone that answers a repeat the same way).
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from drawstate.errors import (
    DrawStateCorrupted,
    InternalError,
    SidecarTimeout,
    SidecarUnavailable,
    error_from_wire,
)
from drawstate.limits import DEFAULT_LIMITS, MAX_FRAME_BYTES, Limits
from drawstate.model import DrawState, InvalidState
from drawstate.paths import SOCKET_ENV, implicit_socket_path, unsafe_socket_dir
from drawstate.protocol import FrameBuffer, FrameError, decode_body, encode_frame
from drawstate.results import AuditPage, OutcomeEvent, PendingItem, PendingPage, RollbackResult, SaveResult

DEFAULT_TIMEOUT_S = 1.0
_RECV_CHUNK = 256 * 1024


class Client:
    """Blocking, thread-safe client; `timeout` bounds each call end to end."""

    def __init__(
        self,
        socket_path: str | Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        limits: Limits = DEFAULT_LIMITS,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        explicit = socket_path or os.environ.get(SOCKET_ENV)
        self.socket_path = str(explicit or implicit_socket_path())
        # Only the default directory is checked: an explicit path is the operator's choice.
        self._default_dir = None if explicit else Path(self.socket_path).parent
        self.timeout = timeout
        self.limits = limits
        self._max_frame_bytes = max_frame_bytes
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._frames = FrameBuffer(max_frame_bytes)
        self._ids = itertools.count(1)

    # --- public API ------------------------------------------------------------

    def ping(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._call({"op": "ping"}, timeout)

    def save(
        self,
        state: DrawState | Mapping[str, Any],
        *,
        expect_version: int | None = None,
        ttl_s: int | None = None,
        token: str | None = None,
        durability: str | None = None,
        timeout: float | None = None,
    ) -> SaveResult:
        """Save `state`; a DrawState passed in gets its new `version` set.

        The daemon checks every rule (draw_state_corrupted); checking here too
        would only double the cost of each save. `DrawState.validate()` checks locally.
        """
        data = state.to_dict() if isinstance(state, DrawState) else dict(state)
        data.pop("version", None)
        request: dict[str, Any] = {
            "op": "save",
            "state": data,
            "token": token or secrets.token_hex(8),
        }
        if expect_version is not None:
            request["expect_version"] = expect_version
        if ttl_s is not None:
            request["ttl_s"] = ttl_s
        if durability is not None:
            request["durability"] = durability
        reply = self._call(request, timeout)
        if isinstance(state, DrawState):
            state.version = reply["version"]
        return SaveResult(reply["version"], reply["ttl_s"], reply.get("replicas"))

    def load(
        self, lock_key: str, operation_id: str | None = None, *, timeout: float | None = None
    ) -> DrawState | None:
        """The state of one operation, or the newest live one of `lock_key`; None if there is none."""
        request: dict[str, Any] = {"op": "load", "lock_key": lock_key}
        if operation_id is not None:
            request["operation_id"] = operation_id
        return self._state(self._call(request, timeout).get("state"))

    def rollback(
        self,
        state_or_lock_key: DrawState | Mapping[str, Any] | str,
        operation_id: str | None = None,
        *,
        reason: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
    ) -> RollbackResult:
        """Remove the operation; `final` says whether this caller pays the refund (see RollbackResult).

        `token` names this caller: reuse it to resend the same rollback (a resend gets the same
        answer); a new one is made when None. Another caller's token, after the operation was
        rolled back, gets OperationClosed (closed_by "rollback"): it must not refund.
        """
        token = token or secrets.token_hex(8)
        request: dict[str, Any] = {"op": "rollback", "token": token}
        if isinstance(state_or_lock_key, str):
            request["lock_key"] = state_or_lock_key
            request["operation_id"] = operation_id
        else:
            request["state"] = (
                state_or_lock_key.to_dict()
                if isinstance(state_or_lock_key, DrawState)
                else dict(state_or_lock_key)
            )
        if reason is not None:
            request["reason"] = reason
        reply = self._call(request, timeout)
        return RollbackResult(
            self._state(reply.get("state")),
            reply["cleanup"],
            final=bool(reply.get("final", False)),
            existed=bool(reply.get("existed", False)),
            token=token,
        )

    def complete(self, lock_key: str, operation_id: str, *, timeout: float | None = None) -> bool:
        """Remove a finished operation; True if it still existed."""
        reply = self._call({"op": "complete", "lock_key": lock_key, "operation_id": operation_id}, timeout)
        return bool(reply["existed"])

    def pending(
        self,
        lock_key: str | None = None,
        *,
        older_than_s: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> PendingPage:
        """One page of live (interrupted or running) operations."""
        request: dict[str, Any] = {"op": "pending"}
        for key, value in (
            ("lock_key", lock_key),
            ("older_than_s", older_than_s),
            ("limit", limit),
            ("cursor", cursor),
        ):
            if value is not None:
                request[key] = value
        reply = self._call(request, timeout)
        items = [PendingItem(**item) for item in reply["items"]]
        return PendingPage(items, reply.get("cursor"))

    def iter_pending(
        self, lock_key: str | None = None, *, older_than_s: int | None = None, limit: int = 100
    ) -> Iterator[PendingItem]:
        """Every pending operation, page after page, each once (a SCAN walk may repeat one)."""
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

    def stats(self, *, timeout: float | None = None) -> dict[str, Any]:
        return self._call({"op": "stats"}, timeout)

    def audit(
        self,
        lock_key: str | None = None,
        *,
        since: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        timeout: float | None = None,
    ) -> AuditPage:
        """One page of audit events (rollback, complete, deferred-cleanup), oldest first."""
        request: dict[str, Any] = {"op": "audit"}
        for key, value in (("lock_key", lock_key), ("since", since), ("limit", limit), ("cursor", cursor)):
            if value is not None:
                request[key] = value
        reply = self._call(request, timeout)
        return AuditPage(reply["items"], reply.get("cursor"))

    def iter_audit(
        self, lock_key: str | None = None, *, since: int | None = None, limit: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every audit event from `since` on, page after page."""
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

        Each event stays pending for this consumer until `ack`. `block_ms` waits that long for
        new events when there are none (within the call timeout); `claim_idle_ms` also takes
        over events another consumer of the group left unacknowledged that long.
        """
        request: dict[str, Any] = {"op": "outcomes", "group": group, "consumer": consumer}
        for key, value in (("limit", limit), ("block_ms", block_ms), ("claim_idle_ms", claim_idle_ms)):
            if value is not None:
                request[key] = value
        reply = self._call(request, timeout)
        return [OutcomeEvent.from_wire(item) for item in reply["items"]]

    def ack(self, group: str, ids: Sequence[str], *, timeout: float | None = None) -> int:
        """Acknowledge handled events; returns how many were pending."""
        return int(self._call({"op": "ack", "group": group, "ids": list(ids)}, timeout)["acked"])

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
        timeout = max(self.timeout, block_ms / 1000 + self.timeout)
        while True:
            events = self.outcomes(
                group, consumer, limit=limit, block_ms=block_ms, claim_idle_ms=claim_idle_ms, timeout=timeout
            )
            if not events and stop_when_idle:
                return
            for event in events:
                yield event
                self.ack(group, [event.id])

    def close(self) -> None:
        with self._lock:
            self._disconnect()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- plumbing ----------------------------------------------------------------

    def _state(self, data: Any) -> DrawState | None:
        if data is None:
            return None
        try:
            return DrawState.from_dict(data, self.limits)
        except (InvalidState, TypeError) as exc:
            raise DrawStateCorrupted(f"daemon returned an invalid state: {exc}") from exc

    def _call(self, request: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        with self._lock:
            # A fresh connection gets the request once more: every op is idempotent.
            for attempt in (1, 2):
                fresh = self._sock is None
                try:
                    reply = self._round_trip(request, deadline)
                    break
                except OSError as exc:  # reset, broken pipe, not connected: the socket is gone
                    self._disconnect()
                    if attempt == 2 or fresh or time.monotonic() >= deadline:
                        # The request may have reached the daemon: its outcome is not known.
                        raise SidecarTimeout(
                            f"connection to {self.socket_path} lost before the reply: {exc}"
                        ) from exc
                except SidecarUnavailable as exc:
                    if attempt == 2 and not isinstance(exc, SidecarTimeout):
                        # The first attempt went out before its connection broke: it may have
                        # taken effect, even though this reconnect found nobody.
                        raise SidecarTimeout(f"{exc} (after the first attempt went out)") from exc
                    raise
        if reply.get("ok"):
            return reply
        error = reply.get("error")
        if not isinstance(error, dict):
            raise InternalError(f"malformed reply from daemon: {reply!r:.200}")
        raise error_from_wire(error)

    def _round_trip(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        sock = self._connect(deadline)
        request_id = next(self._ids)
        request["id"] = request_id
        request["deadline_ms"] = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(encode_frame(request))
            while True:
                for body in self._frames.frames():
                    reply = decode_body(body)
                    if isinstance(reply, dict) and reply.get("id") == request_id:
                        return reply
                    if isinstance(reply, dict) and reply.get("id") is None and not reply.get("ok"):
                        return reply  # the daemon could not read our id (e.g. frame too large)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(_RECV_CHUNK)
                if not chunk:
                    raise ConnectionResetError("daemon closed the connection")
                self._frames.feed(chunk)
        except TimeoutError as exc:
            # A late reply would arrive out of step with the next call: drop the connection.
            self._disconnect()
            raise SidecarTimeout(f"no reply from {self.socket_path} within the call timeout") from exc
        except FrameError as exc:
            self._disconnect()
            raise InternalError(f"bad frame from daemon: {exc}") from exc

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self._default_dir is not None and (problem := unsafe_socket_dir(self._default_dir)):
            raise SidecarUnavailable(f"refusing to connect to {self.socket_path}: {problem}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(self.socket_path)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise SidecarUnavailable(f"cannot reach drawstate daemon at {self.socket_path}: {exc}") from exc
        self._sock = sock
        self._frames = FrameBuffer(self._max_frame_bytes)
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
