"""Frames the fuzzer found dangerous, pinned as plain examples against a real daemon process.

- An op nested ~1000 deep decodes (msgpack allows 1024 levels) but cannot be
  repr()'d within Python's recursion limit; the daemon used to raise inside
  data_received, which closed the connection and lost the replies of requests
  already in flight on it.
- A client that half-closes (shutdown(SHUT_WR)) after its last request used to
  lose every reply still being computed: the transport closed at EOF.
"""

from __future__ import annotations

import socket
import struct

import pytest

from drawstate.protocol import encode_frame
from tests.chaos.probes import reply_code
from tests.support.wire import RawPeer


@pytest.fixture
def capped_daemon(chaos_redis, spawn_daemon):
    return spawn_daemon(chaos_redis.url, "--max-inflight", "2")


@pytest.mark.parametrize("depth", [998, 999, 1000, 1023, 1024, 5000])
@pytest.mark.parametrize("container", [b"\x91", b"\x81\xa1k"], ids=["arrays", "maps"])
def test_deeply_nested_op_gets_invalid_request_and_spares_requests_in_flight(module_daemon, depth, container):
    daemon = module_daemon
    body = b"\x82\xa2id\x01\xa2op" + container * depth + b"\xc0"
    peer = RawPeer(daemon.socket_path)
    peer.send_raw(encode_frame({"id": 5, "op": "ping"}) + struct.pack(">I", len(body)) + body)
    replies = {reply["id"]: reply for reply in (peer.read(), peer.read())}
    assert replies[5]["ok"] is True  # the request in flight was answered
    bad = replies[1] if 1 in replies else replies[None]  # nil id: deeper than msgpack decodes
    assert reply_code(bad) == "invalid_request"
    assert peer.request({"id": 6, "op": "ping"})["ok"] is True  # and the connection lives on
    peer.close()
    assert "Traceback" not in daemon.log()


def test_half_closed_client_gets_a_reply_to_every_whole_frame_then_eof(capped_daemon):
    """Ten requests, more than the in-flight cap (2), then half a frame and EOF."""
    daemon = capped_daemon
    frames = [encode_frame({"id": i, "op": "ping" if i % 2 else "stats"}) for i in range(10)]
    peer = RawPeer(daemon.socket_path)
    peer.send_raw(b"".join(frames) + frames[0][:7])
    peer.sock.shutdown(socket.SHUT_WR)
    replies = [peer.read() for _ in range(10)]
    assert sorted(reply["id"] for reply in replies) == list(range(10))
    assert all(reply["ok"] for reply in replies)
    assert peer.closed_by_peer()  # then the daemon closes; the half frame is dropped
    peer.close()
