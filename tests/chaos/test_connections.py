"""Many connections: slow-loris clients on the partial-frame timeout, and 1000 idle ones at the limit."""

from __future__ import annotations

import select
import selectors
import socket
import time
from typing import Any

import pytest

from drawstate.limits import MAX_FRAME_BYTES
from drawstate.protocol import HEADER, FrameBuffer, decode_body, encode_frame
from drawstated.config import MAX_CONNECTIONS
from tests.chaos.probes import rss_kib, timed_request
from tests.support.waiting import wait_until
from tests.support.wire import RawPeer

#: Saves of ~1 KiB each, interleaved with as many loads whose replies are ~1 KiB each.
WITNESS_BOUND_S = 0.25


def test_slow_loris_clients_are_closed_by_the_partial_frame_timeout_and_never_delay_others(
    chaos_redis, spawn_daemon, chaos_report
):
    timeout_s = 1.0
    daemon = spawn_daemon(chaos_redis.url, "--partial-frame-timeout", str(timeout_s))
    frame = encode_frame({"id": 1, "op": "ping"})
    big_header = HEADER.pack(MAX_FRAME_BYTES)
    lorises: dict[str, list[RawPeer]] = {
        "silent": [RawPeer(daemon.socket_path) for _ in range(20)],  # half a frame, then nothing
        "big": [RawPeer(daemon.socket_path) for _ in range(10)],  # 64 KiB of a 1 MiB frame
        "trickle": [RawPeer(daemon.socket_path) for _ in range(10)],  # a byte every 100 ms
    }
    witness = RawPeer(daemon.socket_path, timeout=1)
    started = time.monotonic()
    for peer in lorises["silent"]:
        peer.send_raw(frame[:5])
    for peer in lorises["big"]:
        peer.send_raw(big_header + b"\x00" * 65536)
    for peer in lorises["trickle"]:
        peer.send_raw(big_header)  # then the body, one byte at a time
    closed_at: dict[RawPeer, float] = {}
    worst = 0.0
    next_trickle = time.monotonic() + 0.1
    everyone = [peer for group in lorises.values() for peer in group]
    while len(closed_at) < len(everyone) and time.monotonic() - started < timeout_s + 3:
        now = time.monotonic()
        if now >= next_trickle:
            next_trickle = now + 0.1
            for peer in lorises["trickle"]:
                if peer not in closed_at:
                    try:
                        peer.send_raw(b"\x00")
                    except (BrokenPipeError, ConnectionResetError):
                        closed_at[peer] = now - started
        readable, _, _ = select.select([p.sock for p in everyone if p not in closed_at], [], [], 0.02)
        for peer in everyone:
            if peer.sock in readable and peer not in closed_at:
                peer.sock.settimeout(1)
                assert peer.sock.recv(1) == b"", "a loris got a reply"  # no reply: just closed
                closed_at[peer] = time.monotonic() - started
        seconds, reply = timed_request(witness, "ping")
        assert reply["ok"]
        worst = max(worst, seconds)
    assert len(closed_at) == len(everyone), f"{len(everyone) - len(closed_at)} lorises still open"
    assert min(closed_at.values()) >= timeout_s * 0.9, "closed before the timeout"
    assert max(closed_at.values()) < timeout_s + 1.0
    assert worst < 0.1, f"a well-behaved client waited {worst * 1000:.0f} ms"
    # Nothing is left of them: the witness is the only connection.
    wait_until(lambda: timed_request(witness, "stats")[1]["connections"] == 1, timeout=5)
    for peer in everyone:
        peer.close()
    witness.close()
    chaos_report["slow loris"] = (
        f"{len(everyone)} lorises (silent, 64 KiB of 1 MiB, trickling) closed "
        f"{min(closed_at.values()):.2f}-{max(closed_at.values()):.2f} s after their first byte "
        f"(timeout {timeout_s} s); witness ping worst {worst * 1000:.1f} ms"
    )


# --- a thousand idle connections -----------------------------------------------------------------


def _read_until_eof(
    sel: selectors.BaseSelector, buffers: dict[socket.socket, bytearray], expect: int
) -> set[socket.socket]:
    """Collect what each socket receives until `expect` of them reached EOF (or 10 s passed)."""
    ended: set[socket.socket] = set()
    deadline = time.monotonic() + 10
    while len(ended) < expect and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.1):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            data = sock.recv(4096)
            if data:
                buffers[sock] += data
            else:
                ended.add(sock)
                sel.unregister(sock)
    return ended


@pytest.mark.parametrize("limit", [600, MAX_CONNECTIONS], ids=["limit-600", "default-limit"])
def test_thousand_idle_connections_are_held_to_the_limit_and_the_rest_refused_cleanly(
    chaos_redis, spawn_daemon, many_fds, chaos_report, limit
):
    opened = 1000
    if many_fds < opened + 100:  # the daemon inherits the raised limit too
        pytest.skip(f"RLIMIT_NOFILE hard limit too low for {opened} connections: {many_fds}")
    held_count = min(limit, opened)
    daemon = spawn_daemon(chaos_redis.url, "--max-connections", str(limit))
    assert daemon.proc is not None
    baseline_kib = rss_kib(daemon.proc.pid)
    socks = []
    started = time.monotonic()
    for _ in range(opened):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(daemon.socket_path))
        socks.append(sock)
    connect_s = time.monotonic() - started
    buffers = {sock: bytearray() for sock in socks}
    with selectors.DefaultSelector() as sel:  # epoll: select() stops at fd 1024
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        refused = _read_until_eof(sel, buffers, opened - held_count)
        unasked = sel.select(timeout=0.2)  # a held connection has nothing to read, even a while later
    held = [sock for sock in socks if sock not in refused]
    assert len(refused) == opened - held_count
    for sock in refused:  # exactly one overloaded reply with id nil, then EOF
        frames = FrameBuffer()
        frames.feed(bytes(buffers[sock]))
        [reply] = [decode_body(body) for body in frames.frames()]
        assert reply["id"] is None
        assert reply["error"]["code"] == "overloaded"
        assert reply["error"]["retryable"] is True
    assert not unasked
    assert all(not buffers[sock] for sock in held), "a held connection got data unasked"
    for i, sock in enumerate(held):  # every held connection still works
        sock.sendall(encode_frame({"id": i, "op": "ping"}))
    for i, sock in enumerate(held):
        sock.settimeout(5)
        frames = FrameBuffer()
        while not (bodies := list(frames.frames())):
            frames.feed(sock.recv(4096))
        reply = decode_body(bodies[0])
        assert reply["id"] == i and reply["ok"] is True, reply
    held_kib = rss_kib(daemon.proc.pid)
    stats_peer = held[0]
    stats_peer.sendall(encode_frame({"id": 99, "op": "stats"}))
    frames = FrameBuffer()
    while not (bodies := list(frames.frames())):
        frames.feed(stats_peer.recv(65536))
    stats = decode_body(bodies[0])
    assert stats["connections"] == held_count
    assert stats["connections_refused"] == opened - held_count
    for sock in held[-100:]:  # room again: a new connection is accepted once they are gone
        sock.close()
    wait_until(lambda: _accepted(daemon.socket_path), timeout=5)
    for sock in socks:
        sock.close()
    chaos_report[f"connections (--max-connections {limit})"] = (
        f"{opened} opened in {connect_s:.2f} s against --max-connections {limit}: {len(held)} held and "
        f"served, {len(refused)} refused (overloaded, id nil, EOF); RSS {baseline_kib / 1024:.1f} MiB "
        f"idle, {held_kib / 1024:.1f} MiB with {len(held)} connections"
    )


def _accepted(path: Any) -> bool:
    peer = RawPeer(path, timeout=2)
    try:
        return peer.request({"id": 1, "op": "ping"})["ok"] is True
    finally:
        peer.close()
