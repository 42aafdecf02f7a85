"""The descriptor limit below max_connections: connections past it are refused, never left waiting."""

from __future__ import annotations

import socket

import pytest

from drawstate.protocol import encode_frame


def test_connections_past_the_descriptor_limit_are_served_or_refused_not_left_waiting(
    chaos_redis, spawn_daemon
):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, soft), hard))  # the daemon inherits it
    try:
        daemon = spawn_daemon(chaos_redis.url)  # max_connections 1024, above 256 descriptors
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    socks: list[socket.socket] = []
    try:
        for _ in range(400):  # each is either served or refused; none waits unanswered
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            socks.append(sock)
            sock.settimeout(2)
            try:
                sock.connect(str(daemon.socket_path))
                sock.sendall(encode_frame({"id": 1, "op": "ping"}))
                assert sock.recv(4096), "closed without a reply"
            except (BlockingIOError, TimeoutError):
                pytest.fail(f"connection {len(socks)} got no answer (fd limit {min(256, soft)})")
    finally:
        for sock in socks:
            sock.close()
