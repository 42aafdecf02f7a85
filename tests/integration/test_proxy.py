"""The test proxy (tests/support/proxy.py) against a real redis-server: it forwards, and breaks on cue.

Other tests trust it to cut, stall and lose replies exactly when told; these
pin each control, its counters, and that `close()` leaves no thread or socket.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest
import redis

from testbed.redis_proc import RedisProcess
from tests.support.proxy import TcpProxy

#: How long a stalled proxy must hold a reply back for the test to call it held.
HELD_S = 0.3
#: Read timeout of raw sockets talking through the proxy.
SOCKET_TIMEOUT_S = 5.0


@pytest.fixture
def proxy(own_redis: RedisProcess) -> Iterator[TcpProxy]:
    with TcpProxy(own_redis.socket) as proxy:
        yield proxy


def _raw(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=SOCKET_TIMEOUT_S)


def _closed(sock: socket.socket) -> bool:
    """True when the peer closed or reset the connection (reads EOF or an error)."""
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_proxy_forwards_to_a_unix_socket_and_counts_connections_and_bytes(proxy, own_redis):
    with redis.Redis.from_url(proxy.url, socket_timeout=SOCKET_TIMEOUT_S) as client:
        client.set("k", "v")
        assert client.get("k") == b"v"
    with own_redis.client() as direct:
        assert direct.get("k") == b"v"
    assert proxy.connections_accepted == 1
    assert proxy.bytes_up > 0 and proxy.bytes_down > 0


def test_proxy_forwards_to_a_tcp_target(own_redis):
    with TcpProxy(own_redis.socket) as inner, TcpProxy(inner.address) as outer:
        with redis.Redis.from_url(outer.url, socket_timeout=SOCKET_TIMEOUT_S) as client:
            assert client.ping()
        assert inner.connections_accepted == outer.connections_accepted == 1


def test_cut_resets_open_connections_and_refuses_new_ones_until_restored(proxy):
    sock = _raw(proxy)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    proxy.cut()
    assert _closed(sock)
    assert proxy.connections_open == 0
    late = _raw(proxy)
    assert _closed(late)  # accepted, then closed at once
    assert proxy.connections_refused == 1
    proxy.restore()
    with redis.Redis.from_url(proxy.url, socket_timeout=SOCKET_TIMEOUT_S) as client:
        assert client.ping()
    sock.close()
    late.close()


def test_stall_holds_replies_without_closing_and_unstall_delivers_them(proxy):
    sock = _raw(proxy)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    proxy.stall()
    sock.sendall(b"PING\r\n")
    sock.settimeout(HELD_S)
    with pytest.raises(TimeoutError):
        sock.recv(64)  # held back, and the connection stays open
    assert proxy.connections_open == 1
    proxy.unstall()
    sock.settimeout(SOCKET_TIMEOUT_S)
    assert sock.recv(64) == b"+PONG\r\n"
    sock.close()


def test_lost_reply_applies_the_request_and_closes_both_sides(proxy, own_redis):
    sock = _raw(proxy)
    sock.sendall(b"PING\r\n")
    assert sock.recv(64) == b"+PONG\r\n"
    proxy.cut_after_next_request(b"INCR")
    sock.sendall(b"*2\r\n$4\r\nINCR\r\n$7\r\ncounter\r\n")
    proxy.wait_reply_dropped()
    assert _closed(sock)  # the ":1" never arrives
    with own_redis.client() as direct:
        assert direct.get("counter") == b"1"  # but Redis applied it
    assert proxy.replies_dropped == 1
    with redis.Redis.from_url(proxy.url, socket_timeout=SOCKET_TIMEOUT_S) as client:
        assert client.incr("counter") == 2  # new connections go through: no cut was asked for
    sock.close()


def test_lost_reply_matches_only_the_armed_request_and_then_cut_refuses_until_restored(proxy, own_redis):
    bystander = _raw(proxy)
    sock = _raw(proxy)
    proxy.cut_after_next_request(b"target-key", then_cut=True)
    sock.sendall(b"*2\r\n$3\r\nGET\r\n$5\r\nother\r\n")
    assert sock.recv(64) == b"$-1\r\n"  # not the armed request: answered
    sock.sendall(b"*3\r\n$3\r\nSET\r\n$10\r\ntarget-key\r\n$1\r\nx\r\n")
    proxy.wait_reply_dropped()
    assert _closed(sock)
    assert _closed(bystander)  # then_cut: every connection goes
    refused = _raw(proxy)
    assert _closed(refused)
    with own_redis.client() as direct:
        assert direct.get("target-key") == b"x"
    proxy.restore()
    with redis.Redis.from_url(proxy.url, socket_timeout=SOCKET_TIMEOUT_S) as client:
        assert client.get("target-key") == b"x"
    for s in (bystander, sock, refused):
        s.close()


def test_closed_proxy_leaves_no_thread_and_no_socket(own_redis):
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    proxy = TcpProxy(own_redis.socket).start()
    client = redis.Redis.from_url(proxy.url, socket_timeout=SOCKET_TIMEOUT_S)
    assert client.ping()
    stalled = _raw(proxy)
    proxy.stall()
    stalled.sendall(b"PING\r\n")
    proxy.close()
    proxy.close()  # twice is fine
    client.close()
    assert _closed(stalled)
    stalled.close()
    assert threading.active_count() == threads
    assert len(os.listdir("/proc/self/fd")) == fds
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=SOCKET_TIMEOUT_S)


def test_proxy_listens_on_a_unix_socket_and_removes_it_when_closed(own_redis, sock_dir):
    path = sock_dir / "p.sock"
    with TcpProxy(own_redis.socket, listen_path=path) as proxy:
        with redis.Redis(unix_socket_path=str(path), socket_timeout=SOCKET_TIMEOUT_S) as client:
            assert client.ping()
        assert proxy.connections_accepted == 1
    assert not path.exists()
