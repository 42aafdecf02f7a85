"""The blocking Client shared by many threads (a pool of connections), its checks, messages and retries."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from drawstate import Client, MultiDraw, Retry, SidecarUnavailable

METADATA = {"user_id": "5", "banner": "autumn", "price_paid": "500"}


def test_a_hundred_threads_share_one_client_without_waiting_for_each_other(daemon):
    errors: list[BaseException] = []
    finished = []
    with Client(daemon.config.socket_path, timeout=10, pool_size=8) as client:

        def player(i: int) -> None:
            try:
                with MultiDraw.start(client, f"threads:{i}", 5, metadata=METADATA) as draw:
                    while not draw.finished:
                        draw.record(i)
                finished.append(draw.closed)
            except BaseException as exc:  # reported below, with every other thread's
                errors.append(exc)

        started = time.monotonic()
        threads = [threading.Thread(target=player, args=(i,)) for i in range(100)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        seconds = time.monotonic() - started
    connections = daemon.call(lambda: daemon.server.stats.connections_total)
    print(f"threads: 100 threads, 700 calls on one Client in {seconds:.2f} s over {connections} connections")
    assert errors == []
    assert finished == ["complete"] * 100
    assert 1 < connections <= 8  # calls ran side by side, on at most pool_size connections


def test_a_pool_of_one_still_serves_every_thread_in_turn(daemon):
    with Client(daemon.config.socket_path, timeout=10, pool_size=1) as client:
        results = []
        threads = [threading.Thread(target=lambda: results.append(client.ping().up)) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == [True] * 20


@pytest.mark.parametrize(("field", "value"), [("timeout", 0), ("timeout", -1.0), ("pool_size", 0)])
def test_a_client_refuses_settings_that_could_never_work(field, value):
    with pytest.raises(ValueError, match=field):
        Client("/tmp/unused.sock", **{field: value})


def test_no_daemon_says_how_to_get_one(tmp_path: Path):
    with Client(tmp_path / "nobody.sock", timeout=0.5) as client, pytest.raises(SidecarUnavailable) as caught:
        client.ping()
    message = str(caught.value)
    assert str(tmp_path / "nobody.sock") in message
    assert "drawstate serve" in message and "DRAWSTATE_SOCKET" in message


def test_a_retry_policy_resends_retryable_failures_and_logs_each_at_debug(tmp_path: Path, caplog):
    caplog.set_level(logging.DEBUG, logger="drawstate.retry")
    retry = Retry(attempts=3, backoff_s=0.01, max_backoff_s=0.02)
    with (
        Client(tmp_path / "nobody.sock", timeout=0.5, retry=retry) as client,
        pytest.raises(SidecarUnavailable),
    ):
        client.ping()
    retries = [record for record in caplog.records if record.name == "drawstate.retry"]
    assert len(retries) == 2  # three attempts: two resends
    assert all(
        record.levelno == logging.DEBUG and "sidecar_unavailable" in record.getMessage() for record in retries
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": None, "deadline_s": None},
        {"deadline_s": -1},
        {"backoff_s": 2, "max_backoff_s": 1},
    ],
)
def test_a_retry_policy_refuses_limits_that_make_no_sense(kwargs):
    with pytest.raises(ValueError):
        Retry(**kwargs)
