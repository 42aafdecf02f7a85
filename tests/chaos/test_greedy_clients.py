"""Slow and greedy clients: none of them may stall others or grow the daemon's memory without bound.

- a client that pipelines tens of thousands of requests and never reads is
  throttled (reading stops while its replies pile up), the daemon's RSS stays
  bounded, and once the client reads, every reply is there;
- replies of requests already in flight are what the write-buffer mark cannot
  stop, so big replies are bounded by the in-flight cap;
- the in-flight cap holds per connection;
- slow-loris clients holding partial frames are closed by the partial-frame
  timeout, however they trickle, and never delay anyone else;
- a thousand idle connections are held up to the configured limit, and the
  rest are refused cleanly (`overloaded`, id nil, then EOF).
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Any

from drawstate import Client
from drawstate.protocol import FrameBuffer, decode_body, encode_frame
from tests.chaos.probes import reply_code, rss_kib, timed_request
from tests.support.waiting import wait_until
from tests.support.wire import RawPeer

#: Saves of ~1 KiB each, interleaved with as many loads whose replies are ~1 KiB each.
GREEDY_SAVES = 20_000
#: What the daemon may add to its resident memory while a client pipelines those 40 000 frames
#: (22 MiB) and never reads. Its buffers for that connection are bounded by one read chunk
#: (256 KiB) of unparsed frames, MAX_INFLIGHT (128) decoded requests of ~1 KiB, the write
#: buffer's high mark (1 MiB, connection.WRITE_BUFFER_HIGH) plus the replies of the requests in
#: flight when it was crossed (128 x ~1 KiB), and the Redis pipeline of those requests: under
#: 4 MiB. Allocator slack (pymalloc arenas, fragmentation) can double that. Without the throttle
#: the daemon would take the whole 22 MiB stream in or queue 20 MiB of replies, so 24 MiB
#: separates "bounded" from "buffers whatever the client sends".
MEMORY_HEADROOM_MIB = 24
#: No progress on the greedy socket for this long means the daemon has stopped reading it.
STALLED_S = 1.0
#: A well-behaved client is answered this fast while a greedy one hogs its own connection.
WITNESS_BOUND_S = 0.25


def _state(lock_key: str, operation_id: str, **fields: Any) -> dict[str, Any]:
    now = int(time.time())
    state = {
        "lock_key": lock_key,
        "operation_id": operation_id,
        "total_count": 10,
        "completed_count": 0,
        "start_time": now,
        "last_update_time": now,
    }
    state.update(fields)
    return state


def _greedy_frames(saves: int) -> list[bytes]:
    """Alternating saves (~1 KiB request) and loads (~1 KiB reply) of one state."""
    state = _state("greedy:1", "20260101_000000_0000feed", metadata={"blob": "x" * 900})
    load = {"op": "load", "lock_key": "greedy:1", "operation_id": "20260101_000000_0000feed"}
    frames = []
    for i in range(saves):
        frames.append(encode_frame({"id": 2 * i, "op": "save", "state": state, "deadline_ms": 10_000}))
        frames.append(encode_frame({"id": 2 * i + 1, **load, "deadline_ms": 10_000}))
    return frames


class Sampler:
    """Samples the daemon's RSS and times a well-behaved client's ping, at most every `every` s."""

    def __init__(self, pid: int, witness: RawPeer, every: float = 0.05) -> None:
        self.pid = pid
        self.witness = witness
        self.every = every
        self.peak_kib = rss_kib(pid)
        self.samples = 0
        self.witness_times: list[float] = []
        self._next = 0.0

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
        self.samples += 1
        seconds, reply = timed_request(self.witness, "ping")
        assert reply["ok"] is True
        self.witness_times.append(seconds)

    def hold(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.tick()
            time.sleep(0.01)


def _push_until_throttled(sock: socket.socket, blob: memoryview, sampler: Sampler) -> int:
    """Write without ever reading until the daemon stops taking bytes; the bytes it took."""
    sent, last_progress = 0, time.monotonic()
    while sent < len(blob) and time.monotonic() - last_progress < STALLED_S:
        sampler.tick()
        try:
            sent += sock.send(blob[sent : sent + 65536])
            last_progress = time.monotonic()
        except BlockingIOError:
            select.select([], [sock], [], 0.02)
    return sent


def _drain(sock: socket.socket, blob: memoryview, sent: int, count: int, sampler: Sampler) -> dict[int, str]:
    """Read `count` replies, sending the rest of `blob` meanwhile; reply id → code."""
    frames, codes = FrameBuffer(), {}
    deadline = time.monotonic() + 30
    while len(codes) < count and time.monotonic() < deadline:
        sampler.tick()
        writers = [sock] if sent < len(blob) else []
        readable, writable, _ = select.select([sock], writers, [], 0.05)
        if writable:
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(blob[sent : sent + 65536])
        if readable:
            data = sock.recv(1 << 20)
            assert data, f"the daemon closed the greedy connection after {len(codes)} replies"
            frames.feed(data)
            for body in frames.frames():
                reply = decode_body(body)
                codes[reply["id"]] = reply_code(reply)
    return codes


def _greedy_run(daemon: Any, frames: list[bytes], warm_up: int) -> dict[str, Any]:
    """Warm up, then pipeline `frames` without reading until throttled, hold, then read them all."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    idle_kib = rss_kib(pid)
    warm = RawPeer(daemon.socket_path)  # the same work, read as it comes: a warmed-up baseline
    for start in range(0, warm_up, 100):
        batch = frames[start : start + 100]
        warm.send_raw(b"".join(batch))
        assert all(warm.read()["ok"] for _ in batch)
    warm.close()
    baseline_kib = rss_kib(pid)
    witness = RawPeer(daemon.socket_path, timeout=2.0)
    sampler = Sampler(pid, witness)
    greedy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    greedy.connect(str(daemon.socket_path))
    greedy.setblocking(False)
    blob = memoryview(b"".join(frames))
    try:
        taken = _push_until_throttled(greedy, blob, sampler)
        sampler.hold(1.0)  # paused and staying paused, while the witness is served
        throttled_peak_kib = sampler.peak_kib
        codes = _drain(greedy, blob, taken, len(frames), sampler)
    finally:
        greedy.close()
        witness.close()
    return {
        "bytes": len(blob),
        "taken": taken,
        "codes": codes,
        "idle_kib": idle_kib,
        "baseline_kib": baseline_kib,
        "throttled_peak_kib": throttled_peak_kib,
        "peak_kib": sampler.peak_kib,
        "samples": sampler.samples,
        "witness_worst_s": max(sampler.witness_times),
    }


def test_client_that_pipelines_and_never_reads_is_throttled_with_bounded_daemon_memory(
    chaos_redis, spawn_daemon, chaos_report
):
    daemon = spawn_daemon(chaos_redis.url)
    frames = _greedy_frames(GREEDY_SAVES)
    run = _greedy_run(daemon, frames, warm_up=2000)
    # Throttled: the daemon stopped reading long before the stream ended, ...
    assert run["taken"] < run["bytes"] // 4, f"the daemon took {run['taken']} bytes without a read"
    # ... a well-behaved client was served all along, ...
    assert run["witness_worst_s"] < WITNESS_BOUND_S, run["witness_worst_s"]
    # ... and once the greedy client read, every reply was there.
    assert len(run["codes"]) == len(frames), "a reply went missing"
    assert set(run["codes"].values()) == {"ok"}
    growth_mib = (run["peak_kib"] - run["idle_kib"]) / 1024  # from the idle daemon, warm-up included
    assert growth_mib < MEMORY_HEADROOM_MIB, f"daemon RSS grew {growth_mib:.1f} MiB"
    chaos_report["greedy: never-reading client"] = (
        f"{len(frames)} frames ({run['bytes'] / 2**20:.1f} MiB: {GREEDY_SAVES} ~1 KiB saves + as many "
        f"loads); daemon took {run['taken'] / 2**20:.2f} MiB, then paused reading; RSS idle "
        f"{run['idle_kib'] / 1024:.1f} MiB, warmed {run['baseline_kib'] / 1024:.1f} MiB, peak while "
        f"throttled {run['throttled_peak_kib'] / 1024:.1f} MiB, peak overall {run['peak_kib'] / 1024:.1f} "
        f"MiB (+{growth_mib:.1f} MiB over idle; bound {MEMORY_HEADROOM_MIB}); {run['samples']} RSS "
        f"samples; all {len(frames)} replies arrived; witness ping worst "
        f"{run['witness_worst_s'] * 1000:.1f} ms"
    )


def test_big_replies_to_a_never_reading_client_are_bounded_by_the_inflight_cap(
    chaos_redis, spawn_daemon, chaos_report
):
    """The write-buffer mark stops new work; replies of requests already in flight still land.

    So a connection's worst case is about max_inflight x its largest reply on top of the mark:
    with 16 in flight and ~480 KiB states that is ~8 MiB, whereas the default 128 would allow
    ~60 MiB (see docs/limits.md).
    """
    inflight, loads = 16, 300
    daemon = spawn_daemon(chaos_redis.url, "--max-inflight", str(inflight))
    prize = {"id": "p" * 100, "name": "n" * 150, "probability": 0.5, "value": 1}
    big = _state(
        "greedy:big", "big-1", total_count=10_000, completed_count=1600, prize_results=[prize] * 1600
    )
    with Client(daemon.socket_path, timeout=5) as client:
        client.save(big)
    reply_bytes = len(encode_frame({"id": 1, "ok": True, "state": {**big, "version": 1}}))
    frames = [
        encode_frame({"id": i, "op": "load", "lock_key": "greedy:big", "operation_id": "big-1"})
        for i in range(loads)
    ]
    run = _greedy_run(daemon, frames, warm_up=100)
    assert len(run["codes"]) == loads
    assert set(run["codes"].values()) == {"ok"}
    assert run["witness_worst_s"] < WITNESS_BOUND_S, run["witness_worst_s"]
    growth_mib = (run["peak_kib"] - run["idle_kib"]) / 1024
    bound_mib = 2 * inflight * reply_bytes / 2**20 + 8  # replies in flight, twice over for slack
    assert growth_mib < bound_mib, f"daemon RSS grew {growth_mib:.1f} MiB (bound {bound_mib:.1f})"
    chaos_report["greedy: never-reading client, big replies"] = (
        f"{loads} loads of a {reply_bytes / 1024:.0f} KiB state, --max-inflight {inflight}: RSS idle "
        f"{run['idle_kib'] / 1024:.1f} MiB, peak {run['peak_kib'] / 1024:.1f} MiB "
        f"(+{growth_mib:.1f} MiB; bound {bound_mib:.1f})"
    )


def test_inflight_cap_holds_per_connection_while_redis_is_stalled(own_redis, spawn_daemon, chaos_report):
    cap, sent_each = 8, 100
    daemon = spawn_daemon(own_redis.url, "--max-inflight", str(cap))
    greedy = [RawPeer(daemon.socket_path, timeout=10) for _ in range(2)]
    witness = RawPeer(daemon.socket_path, timeout=2)
    own_redis.pause()
    try:
        for n, peer in enumerate(greedy):
            peer.send_raw(
                b"".join(
                    encode_frame(
                        {"id": i, "op": "save", "deadline_ms": 10_000, "state": _state(f"cap:{n}", f"op-{i}")}
                    )
                    for i in range(sent_each)
                )
            )
        # The stats request counts itself: two capped connections plus one.
        wait_until(lambda: timed_request(witness, "stats")[1]["in_flight"] == 2 * cap + 1, timeout=5)
        seen = {timed_request(witness, "stats")[1]["in_flight"] for _ in range(4)}
        assert seen == {2 * cap + 1}, seen  # it holds while Redis stays stalled
    finally:
        own_redis.resume()
    for peer in greedy:
        replies = [peer.read() for _ in range(sent_each)]
        assert sorted(r["id"] for r in replies) == list(range(sent_each))
        assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:3]
        peer.close()
    witness.close()
    chaos_report["greedy: in-flight cap"] = f"{2 * cap + 1} in flight ({cap} per connection + stats) held"


# --- slow loris ------------------------------------------------------------------------------
