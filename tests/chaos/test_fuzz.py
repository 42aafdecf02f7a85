"""Protocol fuzzing against one real daemon process that must survive every example.

Every frame gets a reply with a known error code, or the connection is closed
(frame_too_large); the daemon never hangs or dies; after each example a
well-behaved client on its own connection still gets a ping reply within 1 s;
and at the end no stored state breaks a rule and the canary state is untouched.
The CI run uses a fixed example budget; the `slow` soak runs ten times more.
"""

from __future__ import annotations

import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from drawstate import Client
from drawstate.limits import INT64_MAX
from drawstate.protocol import encode_frame
from drawstated.codec import decode_state
from testbed.redis_proc import RedisProcess
from tests.chaos.frames import LOCK_KEYS, Blob, Frame, frames
from tests.chaos.probes import completion, cut_stream, reply_code, rss_kib, timed_request
from tests.support.daemon import DaemonProcess
from tests.support.waiting import wait_until
from tests.support.wire import RawPeer

#: Examples per property in the CI run; the soak (pytest -m slow) multiplies them by SOAK_FACTOR.
FRAME_EXAMPLES = 400
STREAM_EXAMPLES = 200
TRUNCATED_EXAMPLES = 150
SOAK_FACTOR = 10
#: A fuzzed frame's reply may take this long (requests that reach Redis included); no example waits on it.
READ_TIMEOUT_S = 5.0
#: How fast the well-behaved client must be answered after every example.
WITNESS_PING_S = 1.0
SENTINEL_ID = INT64_MAX - 7
#: RSS the daemon may keep after fuzzing: decoding 1 MiB frames and 250 000-item lists leaves
#: allocator arenas behind (observed: +15 MiB after the CI budget, +30 MiB after the soak, going
#: up and down between runs rather than growing per example). Keeping the frames themselves
#: (`fuzz: bytes sent` in the report, well over this) would not stay under it.
RSS_AFTER_FUZZ_MIB = 64


def _settings(examples: int) -> settings:
    """No shrinking: an example drives real processes with second-long timeouts, so shrinking a
    failure would rerun it for minutes (and past the test's timeout); the failing example is
    reported whole, with a blob for @reproduce_failure."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@dataclass
class Target:
    daemon: DaemonProcess
    witness: RawPeer
    canary: dict[str, Any]
    rss_before_kib: int
    frames: int = 0
    bytes_sent: int = 0
    examples: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)

    @property
    def socket_path(self) -> Path:
        return self.daemon.socket_path


@pytest.fixture(scope="module")
def target(module_daemon: DaemonProcess, chaos_report: dict[str, Any]) -> Iterator[Target]:
    now = int(time.time())
    canary = {
        "lock_key": LOCK_KEYS[0],
        "operation_id": "canary_never_fuzzed",
        "total_count": 10,
        "completed_count": 2,
        "results": [3, 4],
        "start_time": now,
        "last_update_time": now,
        "metadata": {"user_id": "7"},
    }
    with Client(module_daemon.socket_path) as client:
        assert client.save(canary, ttl_s=3600).version == 1
    witness = RawPeer(module_daemon.socket_path, timeout=WITNESS_PING_S)
    assert module_daemon.proc is not None
    rss_before = rss_kib(module_daemon.proc.pid)
    fuzzed = Target(module_daemon, witness, canary, rss_before)
    yield fuzzed
    proc = module_daemon.proc
    assert proc is not None
    chaos_report["fuzz: frames fuzzed"] = fuzzed.frames
    chaos_report["fuzz: bytes sent (MiB)"] = round(fuzzed.bytes_sent / 2**20, 1)
    chaos_report["fuzz: examples"] = dict(fuzzed.examples)
    chaos_report["fuzz: reply codes"] = dict(fuzzed.codes.most_common())
    rss_after = f"{rss_kib(proc.pid) / 1024:.1f}" if proc.poll() is None else "dead"
    chaos_report["fuzz: daemon RSS before/after (MiB)"] = f"{rss_before / 1024:.1f} / {rss_after}"
    witness.close()


def _still_serving(target: Target) -> None:
    """The daemon is alive and a well-behaved client on another connection is answered in time."""
    assert target.daemon.proc is not None
    assert target.daemon.proc.poll() is None, f"daemon died: {target.daemon.log()[-3000:]}"
    seconds, reply = timed_request(target.witness, "ping")
    assert reply["ok"] is True, reply
    assert seconds < WITNESS_PING_S


def _send(target: Target, peer: RawPeer, data: bytes, may_be_cut_off: bool) -> None:
    target.bytes_sent += len(data)
    try:
        peer.send_raw(data)
    except (BrokenPipeError, ConnectionResetError):
        assert may_be_cut_off, "the daemon closed a connection that sent no oversized frame"


def _read(peer: RawPeer, count: int, target: Target) -> list[dict[str, Any]]:
    replies = []
    for _ in range(count):
        reply = peer.read()  # ConnectionError: closed before every frame was answered
        target.codes[reply_code(reply)] += 1
        replies.append(reply)
    return replies


def _check_frames(target: Target, sent: list[Frame]) -> None:
    oversized = next((i for i, frame in enumerate(sent) if frame.oversized), None)
    if oversized is not None:
        sent = sent[: oversized + 1]  # nothing after it is read
    target.frames += len(sent)
    target.examples["frame lists"] += 1
    peer = RawPeer(target.socket_path, timeout=READ_TIMEOUT_S)
    try:
        stream = b"".join(frame.wire for frame in sent)
        if oversized is None:
            stream += encode_frame({"id": SENTINEL_ID, "op": "ping"})
        _send(target, peer, stream, may_be_cut_off=oversized is not None)
        replies = _read(peer, len(sent) + (oversized is None), target)
        ids = Counter(reply["id"] for reply in replies)
        for reply in replies:
            code = reply_code(reply)
            assert code != "internal", (reply, sent)  # client input must never look like a daemon bug
            if reply["id"] is None:  # an unreadable id: a bad frame, never a request that ran
                assert code in ("invalid_request", "frame_too_large"), reply
        if oversized is None:
            ids[SENTINEL_ID] -= 1
            assert next(r for r in replies if r["id"] == SENTINEL_ID)["ok"] is True
        else:
            assert [r["error"]["code"] for r in replies if r["id"] is None].count("frame_too_large") == 1
            ids[None] -= 1
            assert peer.closed_by_peer(), "frame_too_large must close the connection"
        known = [f for f in sent if f.id_known and not f.oversized]
        for frame in known:
            assert ids[frame.expected_id] > 0, (frame, replies)
            ids[frame.expected_id] -= 1
        assert sum(ids.values()) == len([f for f in sent if not f.id_known and not f.oversized])
    finally:
        peer.close()
    _still_serving(target)


@_settings(FRAME_EXAMPLES)
@given(sent=st.lists(frames, min_size=1, max_size=4))
def test_fuzzed_frames_get_a_known_code_and_the_daemon_keeps_serving(target, sent):
    _check_frames(target, sent)


@pytest.mark.slow
@pytest.mark.timeout(900)
@_settings(FRAME_EXAMPLES * SOAK_FACTOR)
@given(sent=st.lists(frames, min_size=1, max_size=4))
def test_fuzzed_frames_soak(target, sent):
    _check_frames(target, sent)


# --- raw bytes: noise, frames with lying lengths -----------------------------------------

_HEADER = struct.Struct(">I")
chunks = st.one_of(
    st.binary(max_size=64).map(Blob),
    st.binary(max_size=300).map(lambda body: Blob(_HEADER.pack(len(body)) + body)),
    st.tuples(st.binary(min_size=1, max_size=300), st.integers(-8, 8)).map(
        lambda t: Blob(_HEADER.pack(max(0, len(t[0]) + t[1])) + t[0])
    ),
    frames.map(lambda frame: Blob(frame.wire)),
)


def _check_stream(target: Target, stream: bytes) -> None:
    """Random bytes are cut as the framing rule says; a partial frame at the end is completed."""
    cut = cut_stream(stream)
    if not cut.too_large and cut.rest:
        stream += completion(cut.rest)
        cut = cut_stream(stream)
    assert not cut.rest
    target.frames += cut.frames + cut.too_large
    target.examples["raw streams"] += 1
    peer = RawPeer(target.socket_path, timeout=READ_TIMEOUT_S)
    try:
        if not cut.too_large:
            stream += encode_frame({"id": SENTINEL_ID, "op": "ping"})
        _send(target, peer, stream, may_be_cut_off=cut.too_large)
        replies = _read(peer, cut.frames + 1, target)
        if cut.too_large:
            assert any(not r["ok"] and r["error"]["code"] == "frame_too_large" for r in replies)
            assert peer.closed_by_peer()
        else:
            assert any(r["id"] == SENTINEL_ID and r["ok"] for r in replies), "the stream fell out of step"
    finally:
        peer.close()
    _still_serving(target)


@_settings(STREAM_EXAMPLES)
@given(parts=st.lists(chunks, min_size=1, max_size=6))
def test_random_bytes_are_cut_by_their_length_prefix_and_the_stream_stays_in_step(target, parts):
    _check_stream(target, b"".join(parts))


@pytest.mark.slow
@pytest.mark.timeout(900)
@_settings(STREAM_EXAMPLES * SOAK_FACTOR)
@given(parts=st.lists(chunks, min_size=1, max_size=6))
def test_random_bytes_soak(target, parts):
    _check_stream(target, b"".join(parts))


# --- truncated frames: the client stops mid-frame --------------------------------------------


def _check_truncated(target: Target, sent: list[Frame], data: st.DataObject, ending: str) -> None:
    stream = b"".join(frame.wire for frame in sent)
    cut_at = data.draw(st.integers(1, len(stream) - 1), label="cut_at")
    head = stream[:cut_at]
    cut = cut_stream(head)
    target.frames += len(sent)
    target.examples[f"truncated, then {ending}"] += 1
    peer = RawPeer(target.socket_path, timeout=READ_TIMEOUT_S)
    try:
        _send(target, peer, head, may_be_cut_off=cut.too_large)
        if ending == "half-close":
            # "No more requests": every whole frame is still answered, then the daemon closes.
            peer.sock.shutdown(socket.SHUT_WR)
            _read(peer, cut.frames + cut.too_large, target)
            assert peer.closed_by_peer(), "the daemon kept a half-closed connection open"
    finally:
        peer.close()
    _still_serving(target)


@_settings(TRUNCATED_EXAMPLES)
@given(
    sent=st.lists(frames, min_size=1, max_size=3),
    data=st.data(),
    ending=st.sampled_from(["close", "half-close"]),
)
def test_truncated_frames_are_dropped_with_their_connection_and_whole_ones_answered(
    target, sent, data, ending
):
    _check_truncated(target, sent, data, ending)


def test_after_fuzzing_no_connection_leaks_and_no_stored_state_breaks_a_rule(
    target: Target, chaos_redis: RedisProcess
):
    _still_serving(target)
    # Only the witness is left: every fuzzed connection, whatever it left half-sent, was dropped.
    stats = timed_request(target.witness, "stats")[1]
    wait_until(lambda: timed_request(target.witness, "stats")[1]["connections"] == 1, timeout=5)
    assert stats["requests"]  # the daemon counted what it was sent
    checked = 0
    with chaos_redis.client() as rdb:
        for key in rdb.scan_iter(match="lottery:state:*", count=1000):
            raw = rdb.get(key)
            if raw is not None:  # else expired since the SCAN
                decode_state(raw)  # InvalidState here is a corrupted stored state
                checked += 1
    with Client(target.socket_path) as client:
        stored = client.load(target.canary["lock_key"], target.canary["operation_id"])
    assert stored is not None
    assert stored.version == 1
    assert {k: v for k, v in stored.to_dict().items() if k != "version"} == target.canary
    log = target.daemon.log()
    assert "Traceback" not in log, log[-5000:]
    assert checked >= 1
    assert target.daemon.proc is not None
    kept_mib = (rss_kib(target.daemon.proc.pid) - target.rss_before_kib) / 1024
    assert kept_mib < RSS_AFTER_FUZZ_MIB, f"the daemon kept {kept_mib:.1f} MiB after fuzzing"
