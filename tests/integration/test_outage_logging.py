"""A Redis outage under load is two WARNING lines in the daemon's log: when it starts, when it ends.

Not one per failed attempt: the daemon (a `python -m drawstated` child, its log in a file) serves
a few clients that save and load without pause while its Redis is killed for a while, then
started again. The second line carries the counts: failed attempts, failed requests, duration.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drawstate import Client, DrawState, DrawStateError, new_operation_id
from testbed.redis_proc import RedisProcess
from tests.support.daemon import DaemonProcess
from tests.support.waiting import wait_until

CLIENTS = 4
#: How long Redis stays down while the clients keep sending.
OUTAGE_S = 2.0
#: Bound on the whole load, whatever happens.
LOAD_MAX_S = 30.0


@pytest.fixture
def daemon(own_redis: RedisProcess) -> Iterator[DaemonProcess]:
    home = Path(tempfile.mkdtemp(prefix="dso-", dir="/tmp"))
    proc = DaemonProcess(
        home / "d.sock", ["--redis-url", own_redis.url, "--data-dir", str(home / "data")]
    ).start()
    yield proc
    proc.stop()
    shutil.rmtree(home, ignore_errors=True)


def _state(n: int) -> DrawState:
    now = int(time.time())
    return DrawState(
        lock_key=f"player:{n}",
        operation_id=new_operation_id(),
        total_count=10,
        start_time=now,
        last_update_time=now,
    )


class Load:
    """Clients saving and loading in a loop until told to stop; counts answers by kind."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.stop = threading.Event()
        self.ok = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self, n: int) -> None:
        until = time.monotonic() + LOAD_MAX_S
        with Client(self.socket_path, timeout=0.5) as client:
            while not self.stop.is_set() and time.monotonic() < until:
                state = _state(n)
                try:
                    client.save(state)
                    client.load(state.lock_key, state.operation_id)
                    ok, failed = 2, 0
                except DrawStateError:
                    ok, failed = 0, 1
                with self._lock:
                    self.ok += ok
                    self.failed += failed

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.ok, self.failed


def test_a_redis_outage_under_load_logs_one_warning_when_it_starts_and_one_with_counts_when_it_ends(
    own_redis, daemon
):
    with Load(daemon.socket_path) as load:
        wait_until(lambda: load.counts()[0] > 100)
        log_before = len(daemon.log())
        own_redis.kill()
        failed_at_kill = load.counts()[1]
        wait_until(lambda: load.counts()[1] > failed_at_kill + 10)
        time.sleep(OUTAGE_S)  # the outage lasts a while: the length is the point, not a sync
        own_redis.start()
        ok_at_restart = load.counts()[0]
        wait_until(lambda: load.counts()[0] > ok_at_restart + 100, timeout=15)
        wait_until(lambda: "redis available again" in daemon.log()[log_before:])
        failed = load.counts()[1] - failed_at_kill
    lines = daemon.log()[log_before:].splitlines()
    warnings = [line for line in lines if " WARNING " in line]
    print(f"{failed} requests failed during the outage; {len(warnings)} WARNING lines:")
    print("\n".join(warnings))
    started = [line for line in warnings if "redis unavailable" in line]
    ended = [line for line in warnings if "redis available again" in line]
    assert len(started) == 1 and len(ended) == 1, warnings
    assert len(warnings) == 2, warnings
    counts = dict(re.findall(r"(\w+)=([\d.]+)", ended[0]))
    assert int(counts["failed_attempts"]) >= failed
    assert int(counts["failed_requests"]) >= failed
    assert float(counts["outage_s"]) >= OUTAGE_S
