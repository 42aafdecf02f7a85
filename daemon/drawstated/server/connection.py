"""One client connection: frames in, each request dispatched to its op, replies out, with backpressure.

An asyncio Protocol (not streams): bytes are cut into frames by their length
prefix and decoded once, within the daemon's decoding limits (decoding.py). A
connection may have up to max_inflight requests running; at the cap, while the
client is not reading its replies, or past the in-flight byte budget (flow.py:
per connection, and in total), the daemon stops reading from it (pause_reading)
until there is room again.

Dispatch: a fast op (save) is started from here and answers from its Redis reply's callback; any
other op runs in a task of its own (ops/__init__.py says which is which).

When the client leaves (its socket closed, not half-closed), the tasks of its reads are
cancelled. Clients that time out close their connection and send again on a new one, a crowd of
them after a Redis stall: without this, the daemon would first read and decode states for
replies nobody takes. Writes run to their end.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import select
import socket
import struct
import time
from typing import Any, cast

from drawstate import protocol
from drawstate.limits import INT64_MAX
from drawstate.protocol import FrameBuffer, FrameError, encode_frame
from drawstated import errors
from drawstated.ops import READ_ONLY_OPS
from drawstated.ops.context import CoroutineOp, Reply
from drawstated.server.state import ServerState

log = logging.getLogger("drawstated.server.connection")

#: Transport write buffer above which we stop reading from a client that does not read.
WRITE_BUFFER_HIGH = 1024 * 1024
_PEERCRED = struct.Struct("3i")


class Connection(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.config = state.config
        self.frames = FrameBuffer(state.config.max_frame_bytes)
        self.transport: asyncio.Transport | None = None
        self.in_flight = 0
        self.read_paused = False
        self.write_paused = False
        self.partial_timer: asyncio.TimerHandle | None = None
        self.closing = False
        #: Bytes this connection holds, as charged to the budget (see flow.py).
        self.raw_held = 0
        self.requests_held = 0
        self.replies_held = 0
        #: Reading is paused until the total budget goes down.
        self.budget_paused = False
        #: The client sends nothing more (EOF): a half-close, or a close (then its reads are stopped).
        self.eof = False
        #: Tasks of this connection's reads in flight (READ_ONLY_OPS): cancelled if the client leaves.
        self.read_tasks: set[asyncio.Task[None]] = set()
        self.loop = asyncio.get_running_loop()

    # --- lifecycle -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        stats = self.state.stats
        stats.connections_total += 1
        if len(self.state.connections) >= self.state.max_connections:
            stats.connections_refused += 1
            self._refuse(protocol.OVERLOADED, f"connection limit ({self.state.max_connections}) reached")
            return
        if self.config.allowed_uids is not None or self.config.allowed_gids is not None:
            uid, gid = self._peer_ids()
            if uid not in (self.config.allowed_uids or ()) and gid not in (self.config.allowed_gids or ()):
                stats.connections_refused += 1
                log.warning("peer refused: not on the allow list", extra={"uid": uid, "gid": gid})
                self._refuse(protocol.INVALID_REQUEST, f"peer uid {uid} gid {gid} is not allowed to connect")
                return
        self.transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self.state.connections.add(self)
        stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self in self.state.connections:
            self.state.connections.discard(self)
            self.state.stats.connections -= 1
        if self.partial_timer is not None:
            self.partial_timer.cancel()
        self.transport = None
        # Requests still in flight give their share back as they finish (_finished).
        self.frames = FrameBuffer(0)
        self._count_raw()
        self.count_replies()
        self.state.holding_replies.discard(self)
        self.state.budget.forget(self)
        self._stop_reads()

    def _peer_ids(self) -> tuple[int | None, int | None]:
        """The peer's (uid, gid) from SO_PEERCRED: who the kernel says connected, not who claims to."""
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None or not hasattr(socket, "SO_PEERCRED"):
            return None, None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        _, uid, gid = _PEERCRED.unpack(creds)
        return int(uid), int(gid)

    def _refuse(self, code: str, message: str) -> None:
        """Answer with `id: nil`, read nothing more, and close once requests in flight are answered."""
        self._write(errors.error_reply(None, errors.RequestError(code, message)))
        self.close_when_idle()

    def close_when_idle(self) -> None:
        """Read nothing more; close once every request already started is answered.

        At shutdown, requests the daemon has not read yet stay unanswered on a
        closed connection: the client resends them on a new one (every op is
        idempotent), which under socket activation reaches the next daemon.
        """
        self.closing = True
        self.frames = FrameBuffer(0)
        self._count_raw()
        if self.transport is not None:
            if self.in_flight:
                self._pause_reading()
            else:
                self.transport.close()

    # --- reading -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.frames.feed(data)
        self._count_raw()
        if self.state.budget.over():
            self.state.hold_every_connection()  # before any other connection reads a chunk more
            self.wait_for_budget()  # whole frames already read may still start (_over_budget)
        self._cut_frames()

    def eof_received(self) -> bool:
        """EOF: after a half-close, answer every whole frame the client sent, then close.

        Returning True keeps the transport open for the replies (asyncio would
        otherwise close it at once and drop them). A partial frame can no longer
        complete; it is dropped when the connection closes. After a close (no reply
        can reach the client), its reads are stopped; its writes are still finished.
        """
        self.eof = True
        if self.partial_timer is not None:
            self.partial_timer.cancel()
            self.partial_timer = None
        if self._peer_closed():
            self._stop_reads()
        self._close_if_answered()
        return True

    def _peer_closed(self) -> bool:
        """The client closed its socket, not just its sending half: no reply can reach it.

        An EOF alone does not say which. On a unix socket whose peer is gone, poll() reports
        POLLHUP; after a half-close it does not. Where that is not so, the reads run to their end.
        """
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        if sock is None:
            return False
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLOUT)
        return any(events & select.POLLHUP for _, events in poller.poll(0))

    def _stop_reads(self) -> None:
        for task in self.read_tasks:
            task.cancel()  # gives its share of the budget back (_read_done)

    def _close_if_answered(self) -> None:
        """After the client's EOF: close once nothing is in flight and no whole frame waits."""
        if self.eof and self.in_flight == 0 and not self.write_paused and self.transport is not None:
            self.transport.close()

    def _cut_frames(self) -> None:
        if self.closing:
            return
        frames = self.frames.frames()
        progressed = False
        try:
            while not self._over_budget():
                body = next(frames, None)
                if body is None:
                    break
                progressed = True
                self._start(body)
                if self.transport is None or self.transport.is_closing():
                    return
                if self.in_flight >= self.config.max_inflight_per_connection:
                    self._pause_reading()
                    break
        except FrameError as exc:  # frame_too_large: the stream cannot be resynchronised
            self._refuse(exc.code, str(exc))
            return
        finally:
            frames.close()
            self._count_raw()
        self._watch_partial_frame(progressed)
        self._close_if_answered()

    def _watch_partial_frame(self, progressed: bool) -> None:
        """Close a connection that sits on half a frame (slow-loris).

        The clock starts at the first byte of a frame and restarts whenever a
        whole frame arrives, so a busy client is never cut off mid-stream.
        """
        # Paused for its own requests, the client is not at fault; paused for the total budget,
        # half a frame still counts, so parked partial frames cannot hold the budget for good.
        held_back = self.read_paused and not self.budget_paused
        if self.partial_timer is not None and (progressed or len(self.frames) == 0 or held_back):
            self.partial_timer.cancel()
            self.partial_timer = None
        if self.partial_timer is None and len(self.frames) and not held_back and not self.eof:
            self.partial_timer = self.loop.call_later(
                self.config.partial_frame_timeout_s, self._partial_frame_expired
            )

    def _partial_frame_expired(self) -> None:
        self.partial_timer = None
        if self.transport is not None and len(self.frames):
            log.warning("closing connection stuck on a partial frame", extra={"buffered": len(self.frames)})
            self.transport.close()

    def _start(self, body: bytes) -> None:
        """Decode one frame and start its request; bad frames are answered here."""
        started = self.loop.time()  # deadlines run on loop time (ms resolution on uvloop)
        try:
            request, cost = self.state.decoder.decode(body)
        except FrameError as exc:
            self._answer_bad(getattr(exc, "request_id", None), str(exc))
            return
        if not isinstance(request, dict):
            self._answer_bad(None, "a request must be a msgpack map")
            return
        request_id = request.get("id")
        if type(request_id) is not int or not 0 <= request_id <= INT64_MAX:
            self._answer_bad(None, "id must be a non-negative integer")
            return
        op = request.get("op")
        ops = self.state.ops
        fast = ops.fast.get(op) if type(op) is str else None
        coroutine = ops.coroutines.get(op) if type(op) is str and fast is None else None
        if fast is None and coroutine is None:
            # Never repr() the client's value: a deeply nested one raises RecursionError here.
            shown = repr(op[:40]) if type(op) is str else f"of type {type(op).__name__}"
            self._answer_bad(request_id, f"unknown op {shown}; expected one of {', '.join(protocol.OPS)}")
            return
        deadline_ms = request.get("deadline_ms")
        if deadline_ms is None:
            deadline_ms = self.config.default_deadline_ms
        if type(deadline_ms) is not int or deadline_ms < 1:
            self._answer_bad(request_id, "deadline_ms must be a positive integer")
            return
        usable_ms = min(deadline_ms, self.config.max_deadline_ms) - self.config.reply_margin_ms
        deadline = started + max(usable_ms, 1) / 1000
        self.in_flight += 1
        self.state.request_started()
        cost += self.state.reserves.get(str(op), 0)
        self.requests_held += cost
        self.state.budget.change_in_flight(cost)
        if fast is not None:  # no task: answered from the Redis reply's callback
            fast.start(
                request,
                deadline,
                functools.partial(self._respond, request_id, str(op), time.perf_counter(), cost),
            )
            return
        assert coroutine is not None
        task = self.loop.create_task(self._serve(coroutine, request_id, str(op), request, deadline, cost))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)
        if op in READ_ONLY_OPS:
            self.read_tasks.add(task)
            task.add_done_callback(functools.partial(self._read_done, cost))

    def _read_done(self, cost: int, task: asyncio.Task[None]) -> None:
        """A read's task ended; if cancelled (its client left), free what _serve would have freed.

        Here, not in _serve: a task cancelled before its first step never enters _serve. That
        happens when a paused connection is let in again, its buffered frames are started, and
        its EOF is read in the same loop iteration.
        """
        self.read_tasks.discard(task)
        if task.cancelled():
            self._finished(cost)

    def _answer_bad(self, request_id: int | None, message: str) -> None:
        self.state.stats.record("invalid", protocol.INVALID_REQUEST, 0.0)
        self._write(errors.error_reply(request_id, errors.invalid(message)))

    # --- serving -----------------------------------------------------------------------

    async def _serve(
        self,
        serve: CoroutineOp,
        request_id: int,
        op: str,
        request: dict[str, Any],
        deadline: float,
        cost: int,
    ) -> None:
        started = time.perf_counter()
        result: Reply | errors.RequestError
        try:
            # Every Redis call inside is bounded by `deadline` (Commands.run), so no timer here.
            result = await serve(request, deadline)
        except errors.RequestError as exc:
            result = exc
        except Exception as exc:
            log.exception("request failed", extra={"op": op, "request_id": request_id})
            result = errors.internal(exc)
        self._respond(request_id, op, started, cost, result)

    def _respond(
        self,
        request_id: int,
        op: str,
        started: float,
        cost: int,
        result: dict[str, Any] | errors.RequestError,
    ) -> None:
        """Write the reply of one request, count it, and free its in-flight slot."""
        if isinstance(result, errors.RequestError):
            reply, code = errors.error_reply(request_id, result), result.code
        else:
            reply = {"id": request_id, "ok": True}
            reply.update(result)
            code = "ok"
        self._write(reply)
        elapsed = time.perf_counter() - started
        self.state.stats.record(op, code, elapsed)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("request", extra={"op": op, "request_id": request_id, "code": code,
                                        "ms": round(elapsed * 1000, 3)})  # fmt: skip
        self._finished(cost)

    def _finished(self, cost: int) -> None:
        self.in_flight -= 1
        self.requests_held -= cost
        self.state.budget.change_in_flight(-cost)
        self.state.request_finished()
        if self.closing:
            if self.in_flight == 0 and self.transport is not None:
                self.transport.close()
        elif self.read_paused and self.in_flight < self.config.max_inflight_per_connection:
            self._resume_reading()
        self._close_if_answered()

    def _write(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_frame(message))
            self.count_replies()

    # --- the byte budget -----------------------------------------------------------------

    def _count_raw(self) -> None:
        """Charge the budget for the bytes read and not yet decoded."""
        delta = len(self.frames) - self.raw_held
        if delta:
            self.raw_held += delta
            self.state.budget.change(delta)

    def count_replies(self) -> int:
        """Charge the budget for the replies the client has not read yet; returns their bytes."""
        transport = self.transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        delta = held - self.replies_held
        if delta:
            self.replies_held = held
            self.state.budget.change(delta)
            if held:
                self.state.recount_replies(self)
            elif self.read_paused and self.in_flight < self.config.max_inflight_per_connection:
                self._resume_reading()
        return held

    def _over_budget(self) -> bool:
        """Before decoding another frame: pause if this connection or the daemon holds too much."""
        budget = self.state.budget
        if self.in_flight and self.requests_held + self.replies_held >= budget.per_connection:
            self._pause_reading()  # resumed as its own requests finish
            return True
        if budget.full():
            self.wait_for_budget()
            return True
        return False

    def wait_for_budget(self) -> None:
        if self.closing or self.transport is None or self.budget_paused:
            return
        self.budget_paused = True
        self._pause_reading()
        self.state.budget.wait(self, self._budget_freed)
        self._watch_partial_frame(False)

    def _budget_freed(self) -> None:
        self.budget_paused = False
        if self.read_paused and self.in_flight < self.config.max_inflight_per_connection:
            self._resume_reading()
        else:
            self._watch_partial_frame(False)

    # --- flow control --------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.closing or self.write_paused or self.budget_paused:
            return
        if self.transport is None or self.transport.is_closing():
            return
        self.read_paused = False
        self.transport.resume_reading()
        self._cut_frames()  # frames that arrived before the pause

    def pause_writing(self) -> None:
        self.write_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.count_replies()
        if self.read_paused and self.in_flight < self.config.max_inflight_per_connection:
            self._resume_reading()
