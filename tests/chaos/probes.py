"""What the chaos tests share: reply checks, a timed ping, a model of how a stream is cut, RSS.

`cut_stream` is written independently of drawstate.protocol.FrameBuffer on
purpose: it is the test's own statement of the framing rule (4-byte big-endian
length, bodies up to max_frame_bytes, a longer declared length ends the
stream), so a test can predict how many replies a byte stream must get.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drawstate import protocol
from drawstate.errors import RETRYABLE
from drawstate.protocol import encode_frame
from tests.support.wire import RawPeer

#: Every error code the wire protocol defines (docs/protocol.md §9).
KNOWN_CODES = frozenset(
    {
        protocol.INVALID_REQUEST,
        protocol.DRAW_STATE_CORRUPTED,
        protocol.VERSION_CONFLICT,
        protocol.STALE_STATE,
        protocol.OPERATION_CLOSED,
        protocol.NOT_FOUND,
        protocol.REDIS_UNAVAILABLE,
        protocol.DEADLINE_EXCEEDED,
        protocol.OVERLOADED,
        protocol.DURABILITY_NOT_MET,
        protocol.FRAME_TOO_LARGE,
        protocol.INTERNAL,
    }
)
_probe_ids = itertools.count(1 << 60)


def reply_code(reply: Any) -> str:
    """The reply's error code, or "ok"; asserts the reply has the documented shape."""
    assert isinstance(reply, dict), reply
    assert "id" in reply, reply
    if reply.get("ok") is True:
        return "ok"
    assert reply.get("ok") is False, reply
    error = reply["error"]
    code = error["code"]
    assert code in KNOWN_CODES, reply
    assert isinstance(error["message"], str), reply
    assert error["retryable"] is RETRYABLE[code], reply
    return str(code)


def timed_request(
    peer: RawPeer, op: str, deadline_ms: int = 1000, **fields: Any
) -> tuple[float, dict[str, Any]]:
    """Send one request and read until its reply; (seconds, reply). Other replies are dropped."""
    request_id = next(_probe_ids)
    started = time.monotonic()
    peer.send_raw(encode_frame({"id": request_id, "op": op, "deadline_ms": deadline_ms, **fields}))
    while True:
        reply = peer.read()
        if reply.get("id") == request_id:
            return time.monotonic() - started, reply


@dataclass(frozen=True)
class StreamCut:
    """How the daemon must cut a byte stream: whole frames, whether it ends in frame_too_large."""

    frames: int
    too_large: bool
    rest: bytes  # bytes of an incomplete frame at the end (empty after too_large)


def cut_stream(stream: bytes, max_frame_bytes: int = protocol.MAX_FRAME_BYTES) -> StreamCut:
    offset = frames = 0
    while len(stream) - offset >= 4:
        length = int.from_bytes(stream[offset : offset + 4], "big")
        if length > max_frame_bytes:
            return StreamCut(frames, True, b"")
        if len(stream) - offset - 4 < length:
            break
        offset += 4 + length
        frames += 1
    return StreamCut(frames, False, stream[offset:])


def completion(rest: bytes) -> bytes:
    """Zero bytes that turn `rest` (an incomplete frame) into a whole one, or into a too-long header."""
    if len(rest) < 4:
        return b"\x00" * (4 - len(rest)) + completion_body(rest + b"\x00" * (4 - len(rest)))
    return completion_body(rest)


def completion_body(rest: bytes) -> bytes:
    length = int.from_bytes(rest[:4], "big")
    if length > protocol.MAX_FRAME_BYTES:
        return b""  # the header alone already ends the stream
    return b"\x00" * (length - (len(rest) - 4))


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
