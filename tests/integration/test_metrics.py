"""Prometheus metrics over HTTP hold the counts of what the test did."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.waiting import wait_until


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
