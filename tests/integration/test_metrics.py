"""Prometheus metrics over HTTP hold the counts of what the test did."""

from __future__ import annotations

import logging
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drawstate import MultiDraw
from tests.support.waiting import wait_until

#: What the sweeper warns when a consumer group holds the outcome stream over its cap, and after.
OVER_CAP = "outcome stream over its cap"
BACK_WITHIN_CAP = "outcome stream back within its cap"


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_are_scraped_over_http_with_the_counts_of_what_happened(
    redis_url, make_config, start_daemon, new_state
):
    from drawstate import VersionConflict

    daemon = start_daemon(make_config(redis_url=redis_url, metrics_port=0))
    port = daemon.server.metrics.bound_port
    with daemon.client() as client:
        state = new_state()
        for _ in range(3):
            client.save(state)
        with pytest.raises(VersionConflict):
            client.save(state, expect_version=1)
        client.load(state.lock_key)
        client.rollback(state)
    metrics = _scrape(port)
    assert metrics["drawstate_requests_total", (("code", "ok"), ("op", "save"))] == 3
    assert metrics["drawstate_requests_total", (("code", "version_conflict"), ("op", "save"))] == 1
    assert metrics["drawstate_requests_total", (("code", "ok"), ("op", "rollback"))] == 1
    assert metrics["drawstate_request_duration_seconds_count", (("op", "save"),)] == 4
    assert metrics["drawstate_request_duration_seconds_bucket", (("le", "+Inf"), ("op", "load"))] == 1
    assert metrics["drawstate_redis_batch_commands_count", ()] >= 6
    assert metrics["drawstate_deferred_rollbacks", ()] == 0
    assert ("drawstate_redis_retries_total", ()) in metrics
    wait_until(lambda: _scrape(port)["drawstate_connections", ()] == 0)  # the client hung up


def test_no_metrics_port_by_default(daemon):
    assert daemon.server.metrics is None


def test_a_consumer_group_holding_the_outcome_stream_over_its_cap_is_a_gauge_and_one_warning(
    redis_url, make_config, start_daemon, caplog
):
    caplog.set_level(logging.INFO, logger="drawstated.storage.sweeper")
    config = make_config(redis_url=redis_url, metrics_port=0, sweep_interval_s=0.1, audit_maxlen=5)
    daemon = start_daemon(config)
    port = daemon.server.metrics.bound_port

    def warnings(text: str) -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.name == "drawstated.storage.sweeper" and text in r.getMessage()
        ]

    with daemon.client(timeout=5) as client:
        assert _scrape(port)["drawstate_outcome_stream_over_cap", ()] == 0
        client.outcomes("refunds", "slow-worker")  # the group exists and reads from the start
        for i in range(20):
            draw = MultiDraw.start(client, f"cap:{i}", 1, metadata={"user_id": str(i)})
            draw.record(i)
            draw.complete()
        wait_until(lambda: _scrape(port)["drawstate_outcome_stream_over_cap", ()] == 1)
        assert _scrape(port)["drawstate_outcome_stream_length", ()] == 20  # nothing owed was trimmed
        held_at = client.stats().sweeps
        wait_until(lambda: client.stats().sweeps >= held_at + 3)  # more sweeps, still held
        [over] = warnings(OVER_CAP)  # once for the whole streak, not once per sweep
        assert over.levelno == logging.WARNING and (over.__dict__["length"], over.__dict__["cap"]) == (20, 5)
        assert warnings(BACK_WITHIN_CAP) == []

        while events := client.outcomes("refunds", "slow-worker", limit=7):
            client.ack("refunds", [e.id for e in events])
        wait_until(lambda: _scrape(port)["drawstate_outcome_stream_over_cap", ()] == 0)
        assert _scrape(port)["drawstate_outcome_stream_length", ()] <= 5
        back_at = client.stats().sweeps
        wait_until(lambda: client.stats().sweeps >= back_at + 3)
    [back] = warnings(BACK_WITHIN_CAP)
    assert back.levelno == logging.WARNING
    assert len(warnings(OVER_CAP)) == 1
