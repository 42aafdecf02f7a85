"""Wire framing (DESIGN §4): 4-byte big-endian length + msgpack map, cut by FrameBuffer."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drawstate.limits import MAX_FRAME_BYTES
from drawstate.protocol import (
    FRAME_TOO_LARGE,
    HEADER_SIZE,
    INVALID_REQUEST,
    FrameBuffer,
    FrameError,
    decode_body,
    encode_frame,
)
from tests.unit.strategies import PROPERTY_SETTINGS

# Values msgpack carries unchanged both ways (no tuples, no NaN: NaN != NaN).
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
# Request-shaped maps: an id, maybe an op, maybe a nested map and a list, as save requests carry.
messages = st.fixed_dictionaries(
    {"id": st.integers(0, 2**32)},
    optional={
        "op": st.sampled_from(["ping", "save", "load", "rollback", "complete", "pending", "stats"]),
        "state": st.dictionaries(st.text(max_size=8), leaves, max_size=3),
        "results": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
        "blob": st.binary(max_size=300),
    },
)


@st.composite
def stream_and_cuts(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Messages, and their concatenated frames cut into arbitrary chunks (empty chunks included)."""
    sent = draw(st.lists(messages, max_size=4))
    stream = b"".join(encode_frame(message) for message in sent)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    bounds = [0, *cuts, len(stream)]
    return sent, [stream[a:b] for a, b in itertools.pairwise(bounds)]


def drain(buffer: FrameBuffer) -> list[bytes]:
    return list(buffer.frames())


@PROPERTY_SETTINGS
@given(stream_and_cuts())
def test_frame_buffer_yields_every_message_in_order_whatever_the_chunking(
    case: tuple[list[dict[str, Any]], list[bytes]],
) -> None:
    sent, chunks = case
    buffer = FrameBuffer()
    received = []
    for chunk in chunks:
        buffer.feed(chunk)
        received.extend(decode_body(body) for body in buffer.frames())
    assert received == sent
    assert len(buffer) == 0


def test_frame_is_big_endian_length_then_msgpack_map() -> None:
    # The example frame of the protocol doc: {"id": 1, "op": "ping"}.
    frame = encode_frame({"id": 1, "op": "ping"})
    assert frame.hex() == "0000000d" + "82a2696401a26f70a470696e67"
    assert HEADER_SIZE == 4


def test_frame_length_counts_only_the_body() -> None:
    message = {"id": 7, "op": "save", "state": {"lock_key": "p" * 300}}
    frame = encode_frame(message)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    assert msgpack.unpackb(frame[4:], raw=False) == message


def test_bytes_travel_as_msgpack_bin_and_come_back_as_bytes() -> None:
    frame = encode_frame({"blob": b"\x00\xff"})
    assert b"\xc4\x02\x00\xff" in frame
    assert decode_body(frame[4:]) == {"blob": b"\x00\xff"}


def test_decode_body_accepts_a_memoryview() -> None:
    assert decode_body(memoryview(encode_frame({"id": 1})[4:])) == {"id": 1}


def test_decode_body_keeps_non_string_map_keys() -> None:
    assert decode_body(msgpack.packb({1: "a"})) == {1: "a"}


# --- partial frames -------------------------------------------------------------------


def test_partial_header_yields_nothing() -> None:
    buffer = FrameBuffer()
    buffer.feed(encode_frame({"id": 1})[:3])
    assert drain(buffer) == []
    assert len(buffer) == 3


def test_partial_body_yields_nothing_until_the_frame_is_complete() -> None:
    frame = encode_frame({"id": 1, "op": "ping"})
    buffer = FrameBuffer()
    for byte in frame[:-1]:
        buffer.feed(bytes([byte]))
        assert drain(buffer) == []
    assert len(buffer) == len(frame) - 1
    buffer.feed(frame[-1:])
    assert drain(buffer) == [frame[4:]]
    assert len(buffer) == 0


def test_complete_frames_are_yielded_and_a_trailing_partial_one_is_kept() -> None:
    first, second = encode_frame({"id": 1}), encode_frame({"id": 2})
    buffer = FrameBuffer()
    buffer.feed(first + second[:5])
    assert [decode_body(body) for body in drain(buffer)] == [{"id": 1}]
    assert len(buffer) == 5
    buffer.feed(second[5:])
    assert [decode_body(body) for body in drain(buffer)] == [{"id": 2}]


def test_frames_not_taken_before_the_generator_closes_stay_buffered() -> None:
    buffer = FrameBuffer()
    buffer.feed(encode_frame({"id": 1}) + encode_frame({"id": 2}))
    frames = buffer.frames()
    assert decode_body(next(frames)) == {"id": 1}
    frames.close()
    assert [decode_body(body) for body in drain(buffer)] == [{"id": 2}]


def test_empty_frame_yields_an_empty_body() -> None:
    buffer = FrameBuffer()
    buffer.feed(b"\x00\x00\x00\x00")
    assert drain(buffer) == [b""]


# --- frame_too_large ------------------------------------------------------------------


def test_declared_length_over_max_frame_bytes_raises_frame_too_large() -> None:
    buffer = FrameBuffer(max_frame_bytes=100)
    buffer.feed(struct.pack(">I", 101))
    with pytest.raises(FrameError) as info:
        drain(buffer)
    assert info.value.code == FRAME_TOO_LARGE


def test_frame_too_large_is_raised_from_the_header_alone() -> None:
    # The daemon must not wait for (or buffer) a body it will refuse.
    buffer = FrameBuffer()
    buffer.feed(b"\xff\xff\xff\xff")
    with pytest.raises(FrameError) as info:
        drain(buffer)
    assert info.value.code == FRAME_TOO_LARGE
    assert str(MAX_FRAME_BYTES) in str(info.value)


def test_declared_length_equal_to_max_frame_bytes_is_accepted() -> None:
    buffer = FrameBuffer(max_frame_bytes=100)
    body = b"\xc0" * 100
    buffer.feed(struct.pack(">I", 100) + body)
    assert drain(buffer) == [body]


def test_frames_before_an_oversized_one_are_still_yielded() -> None:
    buffer = FrameBuffer(max_frame_bytes=100)
    buffer.feed(encode_frame({"id": 1}) + struct.pack(">I", 1000))
    frames = buffer.frames()
    assert decode_body(next(frames)) == {"id": 1}
    with pytest.raises(FrameError) as info:
        next(frames)
    assert info.value.code == FRAME_TOO_LARGE


def test_default_max_frame_bytes_is_the_protocol_limit() -> None:
    assert FrameBuffer().max_frame_bytes == MAX_FRAME_BYTES == 1024 * 1024


# --- decode_body ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\xc1", id="never-used-byte"),
        pytest.param(b"\x82\xa2id", id="truncated-map"),
        pytest.param(b"\x01\x02", id="trailing-data"),
        pytest.param(b"\xa2\xff\xfe", id="string-not-utf8"),
        pytest.param(b"\xdb\xff\xff\xff\xff", id="string-length-past-end"),
        pytest.param(b"not msgpack at all, just text", id="text"),
    ],
)
def test_decode_body_of_garbage_raises_frame_error_invalid_request(body: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_body(body)
    assert info.value.code == INVALID_REQUEST


def test_frame_error_is_a_value_error_with_a_code() -> None:
    error = FrameError(FRAME_TOO_LARGE, "too big")
    assert isinstance(error, ValueError)
    assert (error.code, str(error)) == (FRAME_TOO_LARGE, "too big")
