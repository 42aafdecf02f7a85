"""max_connections hostile clients at once: the daemon's peak RSS stays under docs/limits.md's bound.

The daemon is a `python -m drawstated` child with the default limits (1024 connections, the
default in-flight byte budget), its Redis stopped (SIGSTOP) so nothing it starts can finish. Every
connection the limits allow is opened and each does the worst its kind can:

- a quarter send frames of empty maps at the items limit (~60 KB that decode to ~4 MiB each) as
  `load`s, which wait on Redis: decoded frames held in flight;
- a quarter park partial frames of a megabyte: bytes read and never decoded;
- a quarter pipeline `load`s of the largest state and never read a reply: once Redis is back,
  replies pile up unread;
- a quarter pipeline the largest pages, `pending` of a lock key holding many of the largest
  states and `audit` of a stream of their outcome events, and never read a reply: each reads
  Redis a chunk of whole states at a time and decodes them.

RSS is sampled from /proc all along, and after Redis is back. The bound is
drawstated.reference.limits.rss_bound_bytes: the formula docs/limits.md states, with these limits.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

from drawstate import Client, DrawStateError, Stats
from drawstate.limits import MAX_FRAME_BYTES, MAX_STATE_BYTES, MIB
from drawstate.protocol import HEADER, encode_frame
from drawstated.config import MAX_CONNECTIONS, MAX_INFLIGHT_BYTES, MAX_INFLIGHT_PER_CONNECTION
from drawstated.ops.fields import MAX_PENDING_LIMIT
from drawstated.reference.limits import rss_bound_bytes
from drawstated.server.decoding import MAX_REQUEST_ITEMS
from tests.chaos.probes import rss_kib
from tests.support.waiting import wait_until

#: The unit's cap (systemd/drawstated.service): the bound must sit well under it.
MEMORY_MAX = 512 * MIB
#: How long the hostile clients push while Redis is stopped, then after it is back.
STALLED_S = 8.0
DRAINING_S = 4.0
#: Short, so parked partial frames are closed and replaced while the test runs.
PARTIAL_FRAME_TIMEOUT_S = 3.0
SEND_CHUNK = 64 * 1024
#: Loads each never-reading client pipelines: more than its share of the budget lets in at once.
LOADS_EACH = 8
#: The largest states stored under one lock key for the page readers, and how many of them are
#: completed so that the outcome stream holds them too: more than one chunk of each.
PAGE_STATES = 24
PAGE_EVENTS = 20
#: Pages each page-reading client pipelines, pending and audit in turn.
PAGES_EACH = 8
#: Once the clients are gone, the daemon finishes what it had admitted (loads of the largest state
#: cost ~70 ms of CPU each) before a new client is let in: this long at most.
RECOVERY_S = 120.0


def _largest_state(lock_key: str = "memory:big", operation_id: str = "big-1") -> dict[str, Any]:
    """A state of small prizes just under the size cap: the one that decodes to the most Python."""
    now = int(time.time())
    prize = {"id": "p", "name": "", "probability": 0.5, "value": 1}
    count = 0
    state: dict[str, Any] = {}
    while True:
        candidate = {
            "lock_key": lock_key,
            "operation_id": operation_id,
            "total_count": 10_000,
            "completed_count": count + 500,
            "results": [1] * (count + 500),
            "prize_results": [prize] * (count + 500),
            "start_time": now,
            "last_update_time": now,
        }
        if count + 500 > 10_000 or len(orjson.dumps(candidate)) > MAX_STATE_BYTES - 4096:
            return state
        state, count = candidate, count + 500


def _empty_maps_frame(request_id: int) -> bytes:
    lists = (MAX_REQUEST_ITEMS - 10) // 10_001
    pad = [[{}] * 10_000] * lists
    return encode_frame(
        {"id": request_id, "op": "load", "lock_key": "memory:none", "deadline_ms": 30_000, "pad": pad}
    )


class Hostile:
    """One connection and the bytes it still wants to send (never reading anything)."""

    def __init__(self, path: str, blob: memoryview) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.setblocking(False)
        self.blob = blob
        self.sent = 0
        self.closed = False

    def push(self) -> None:
        if self.closed or self.sent >= len(self.blob):
            return
        try:
            self.sent += self.sock.send(self.blob[self.sent : self.sent + SEND_CHUNK])
        except BlockingIOError:
            pass
        except OSError:  # closed by the daemon (a parked partial frame timed out)
            self.closed = True


def _answers(client: Client, call: Callable[[], Any]) -> bool:
    try:
        reply = call()
    except DrawStateError:  # timed out waiting behind the work already admitted: ask again
        return False
    return reply is not None and (not isinstance(reply, dict) or reply["redis"] == "up")


def _stats_once_answered(client: Client) -> Stats:
    """The daemon's counters, asked again while it is still busy with the work admitted before."""
    found: list[Stats] = []

    def ask() -> bool:
        try:
            found.append(client.stats())
        except DrawStateError:
            return False
        return True

    wait_until(ask, timeout=RECOVERY_S, interval=0.5)
    return found[-1]


def _load_big(client: Client) -> Callable[[], Any]:
    return lambda: client.load("memory:big", "big-1")


def _blobs() -> dict[str, memoryview]:
    maps = b"".join(_empty_maps_frame(i) for i in range(MAX_INFLIGHT_PER_CONNECTION))
    body_length = MAX_FRAME_BYTES
    partial = HEADER.pack(body_length) + b"\x00" * (body_length - 1)
    load = {"op": "load", "lock_key": "memory:big", "operation_id": "big-1", "deadline_ms": 30_000}
    loads = b"".join(encode_frame({"id": i, **load}) for i in range(LOADS_EACH))
    page_requests = (
        {"op": "pending", "lock_key": "memory:pages", "limit": MAX_PENDING_LIMIT, "deadline_ms": 30_000},
        {"op": "audit", "newest": True, "limit": MAX_PENDING_LIMIT, "deadline_ms": 30_000},
    )
    pages = b"".join(encode_frame({"id": i, **page_requests[i % 2]}) for i in range(PAGES_EACH))
    return {
        "maps": memoryview(maps),
        "partial": memoryview(partial),
        "loads": memoryview(loads),
        "pages": memoryview(pages),
    }


def _store_page_states(client: Client) -> None:
    """PAGE_STATES of the largest states pending under one lock key, PAGE_EVENTS more completed."""
    names = [f"page-{n:02d}" for n in range(PAGE_STATES + PAGE_EVENTS)]
    for name in names:
        client.save(_largest_state("memory:pages", name))
    for name in names[:PAGE_EVENTS]:
        assert client.complete("memory:pages", name)


def test_max_connections_hostile_clients_keep_the_daemon_under_its_stated_rss_bound(
    own_redis, spawn_daemon, many_fds, chaos_report
):
    assert many_fds >= MAX_CONNECTIONS + 64
    daemon = spawn_daemon(own_redis.url, "--partial-frame-timeout", str(PARTIAL_FRAME_TIMEOUT_S))
    assert daemon.proc is not None
    pid = daemon.proc.pid
    with Client(daemon.socket_path, timeout=10) as client:
        client.save(_largest_state())
        assert client.load("memory:big", "big-1") is not None  # warm: the load path has run once
        _store_page_states(client)
        assert len(client.pending("memory:pages", limit=MAX_PENDING_LIMIT).items) == PAGE_STATES
        assert client.audit(newest=True, limit=MAX_PENDING_LIMIT).items  # a frame holds one or two
    idle_kib = rss_kib(pid)
    bound = rss_bound_bytes(MAX_INFLIGHT_BYTES, MAX_CONNECTIONS)
    assert bound < MEMORY_MAX * 0.7, "the stated bound must sit well under MemoryMax"

    blobs = _blobs()
    kinds = ("partial", "maps", "loads", "pages")
    own_redis.pause()
    hostiles: list[Hostile] = []
    peak_kib = idle_kib
    samples = 0
    try:
        for n in range(MAX_CONNECTIONS):
            kind = kinds[n % len(kinds)]
            hostiles.append(Hostile(str(daemon.socket_path), blobs[kind]))
        until = time.monotonic() + STALLED_S
        while time.monotonic() < until:
            for hostile in hostiles:
                hostile.push()
            peak_kib = max(peak_kib, rss_kib(pid))
            samples += 1
        stalled_peak_kib = peak_kib
    finally:
        own_redis.resume()
    until = time.monotonic() + DRAINING_S
    while time.monotonic() < until:
        for hostile in hostiles:
            hostile.push()
        peak_kib = max(peak_kib, rss_kib(pid))
        samples += 1
        time.sleep(0.005)
    sent_mib = sum(h.sent for h in hostiles) / MIB
    closed = sum(h.closed for h in hostiles)
    for hostile in hostiles:
        hostile.sock.close()

    peak = peak_kib * 1024
    print(
        f"{MAX_CONNECTIONS} hostile connections, {sent_mib:.0f} MiB sent, {closed} closed by the "
        f"partial-frame timeout: RSS idle {idle_kib / 1024:.1f} MiB, peak {peak / MIB:.1f} MiB "
        f"({stalled_peak_kib / 1024:.1f} MiB while Redis was stopped) over {samples} samples; "
        f"bound {bound / MIB:.1f} MiB; MemoryMax {MEMORY_MAX // MIB} MiB"
    )
    assert peak < bound, f"peak RSS {peak / MIB:.1f} MiB passed the stated bound {bound / MIB:.1f} MiB"
    # Still serving once the clients are gone: the work they had admitted is finished first.
    closed_at = time.monotonic()
    with Client(daemon.socket_path, timeout=5) as client:
        wait_until(lambda: _answers(client, client.ping), timeout=RECOVERY_S, interval=0.5)
        recovered_s = time.monotonic() - closed_at
        wait_until(lambda: _answers(client, _load_big(client)), timeout=RECOVERY_S, interval=0.5)
        answered = _stats_once_answered(client).requests
    pages = {op: answered.get(op, {}).get("ok", 0) - 1 for op in ("pending", "audit")}  # less the warm-up's
    print(f"serving new clients again {recovered_s:.1f} s after the hostile ones left")
    print(f"pages built for the hostile clients: {pages['pending']} pending, {pages['audit']} audit")
    assert pages["pending"] > 0 and pages["audit"] > 0, "the page readers must have had pages built"
    chaos_report["memory bound: max_connections hostile clients"] = (
        f"{MAX_CONNECTIONS} connections (frames of empty maps at the items limit held in flight, "
        f"1 MiB partial frames, loads of a {len(orjson.dumps(_largest_state())) // 1024} KiB state and "
        f"pending and audit pages of {PAGE_STATES} and {PAGE_EVENTS} such states never read), "
        f"Redis stopped {STALLED_S:.0f} s then back: RSS idle {idle_kib / 1024:.1f} MiB, peak "
        f"{peak / MIB:.1f} MiB; stated bound {bound / MIB:.1f} MiB; MemoryMax {MEMORY_MAX // MIB} MiB; "
        f"serving new clients {recovered_s:.1f} s after they left; pages built: {pages['pending']} pending, "
        f"{pages['audit']} audit"
    )
