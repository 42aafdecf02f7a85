"""The wire protocol: 4-byte big-endian length + msgpack map, its ops and its error codes.

Both sides cut frames with `FrameBuffer`, so the daemon and the client agree
byte for byte; docs/protocol.md describes the same thing for other languages.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from typing import Any, Literal, get_args

import msgpack

from drawstate.limits import MAX_FRAME_BYTES

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

OPS = ("ping", "save", "load", "rollback", "complete", "pending", "stats", "audit", "outcomes", "ack")

#: How durable a save must be before the daemon answers: the primary took it, or replicas too.
Durability = Literal["ack", "replicated"]
DURABILITIES: tuple[Durability, ...] = get_args(Durability)
#: Who a rollback asks to pay its refund: its caller, or a refund worker reading the outcome stream.
RefundBy = Literal["caller", "stream"]
REFUND_BY: tuple[RefundBy, ...] = get_args(RefundBy)

# Error codes, as sent on the wire.
INVALID_REQUEST = "invalid_request"
DRAW_STATE_CORRUPTED = "draw_state_corrupted"
VERSION_CONFLICT = "version_conflict"
STALE_STATE = "stale_state"
OPERATION_CLOSED = "operation_closed"
NOT_FOUND = "not_found"
REDIS_UNAVAILABLE = "redis_unavailable"
DEADLINE_EXCEEDED = "deadline_exceeded"
OVERLOADED = "overloaded"
DURABILITY_NOT_MET = "durability_not_met"
OUTCOME_UNKNOWN = "outcome_unknown"
#: A save sent only what it appends, to a state this daemon does not hold: send the whole state.
BASE_UNKNOWN = "base_unknown"
FRAME_TOO_LARGE = "frame_too_large"
INTERNAL = "internal"


class FrameError(ValueError):
    """A frame could not be cut or decoded; `code` is the wire code to answer with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def encode_frame(message: dict[str, Any]) -> bytes:
    """Serialise one message to its frame: length prefix + msgpack body."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes | memoryview) -> Any:
    """Decode a frame body; raises FrameError(invalid_request) on anything malformed."""
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise FrameError(INVALID_REQUEST, f"body is not valid msgpack: {exc}") from exc


class FrameBuffer:
    """Accumulates bytes from a stream and yields complete frame bodies.

    A declared length above `max_frame_bytes` raises FrameError(frame_too_large):
    the peer cannot be resynchronised, so the connection must be closed.
    """

    __slots__ = ("_buffer", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self.max_frame_bytes = max_frame_bytes

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def __len__(self) -> int:
        return len(self._buffer)

    def frames(self) -> Generator[bytes, None, None]:
        buffer = self._buffer
        offset = 0
        try:
            while len(buffer) - offset >= HEADER_SIZE:
                (length,) = HEADER.unpack_from(buffer, offset)
                if length > self.max_frame_bytes:
                    raise FrameError(
                        FRAME_TOO_LARGE,
                        f"declared frame length {length} exceeds {self.max_frame_bytes} bytes",
                    )
                end = offset + HEADER_SIZE + length
                if len(buffer) < end:
                    break
                body = bytes(buffer[offset + HEADER_SIZE : end])
                offset = end
                yield body
        finally:
            if offset:
                del buffer[:offset]
