"""Prometheus exposition (`--metrics-port`): the daemon's Stats, read at scrape time.

A custom collector turns the counters the hot path already keeps into metric
families when Prometheus scrapes, so serving requests pays nothing extra for
metrics. The HTTP server runs in prometheus-client's own thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from itertools import accumulate
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from drawstated.stats import BATCH_BUCKETS, LATENCY_BUCKETS_S, Stats

log = logging.getLogger("drawstated.server.metrics")


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    cumulative = list(accumulate(counts))
    return [*((f"{bound:g}", float(n)) for bound, n in zip(bounds, cumulative, strict=False)),
            ("+Inf", float(cumulative[-1]))]  # fmt: skip


class StatsCollector(Collector):
    """Reads Stats (and the deferred-rollback count) into Prometheus metric families."""

    def __init__(self, stats: Stats, deferred_rollbacks: Callable[[], int]) -> None:
        self.stats = stats
        self.deferred_rollbacks = deferred_rollbacks

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        requests = CounterMetricFamily(
            "drawstate_requests", "Requests answered, by op and result code.", labels=["op", "code"]
        )
        for (op, code), count in dict(stats.requests).items():
            requests.add_metric([op, code], count)
        yield requests
        latency = HistogramMetricFamily(
            "drawstate_request_duration_seconds", "Time from request start to reply, by op.", labels=["op"]
        )
        for op, counts in dict(stats.latency_buckets).items():
            latency.add_metric([op], _buckets(LATENCY_BUCKETS_S, list(counts)), stats.latency_sums[op])
        yield latency
        batches = HistogramMetricFamily(
            "drawstate_redis_batch_commands", "Commands per Redis pipeline write."
        )
        batches.add_metric([], _buckets(BATCH_BUCKETS, list(stats.batch_buckets)), stats.batched_commands)
        yield batches
        yield CounterMetricFamily(
            "drawstate_redis_retries", "Redis attempts retried after a transient error.", stats.redis_retries
        )
        yield CounterMetricFamily(
            "drawstate_redis_connects",
            "Redis connections opened (first and re-connects).",
            stats.redis_connects,
        )
        yield CounterMetricFamily(
            "drawstate_connections_refused", "Client connections refused (limit, allow list).",
            stats.connections_refused,
        )  # fmt: skip
        sweeps = stats.sweeps
        yield CounterMetricFamily(
            "drawstate_expired_operations", "Operations expired: their TTL passed unclosed.", sweeps.expired
        )
        yield CounterMetricFamily(
            "drawstate_outcome_events_written_late",
            "Outcome events the sweeper wrote for an operation another daemon ended.",
            sweeps.published,
        )
        yield GaugeMetricFamily(
            "drawstate_outcome_stream_length", "Events in the outcome stream after the last trim.",
            sweeps.stream_length,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "drawstate_outcome_stream_over_cap",
            "1 while a consumer group that has not acknowledged older events holds the stream over its cap.",
            int(sweeps.stream_held),
        )
        yield GaugeMetricFamily("drawstate_in_flight_requests", "Requests being served.", stats.in_flight)
        yield GaugeMetricFamily("drawstate_connections", "Open client connections.", stats.connections)
        yield GaugeMetricFamily(
            "drawstate_deferred_rollbacks", "Rollbacks waiting for Redis.", self.deferred_rollbacks()
        )


class MetricsServer:
    """The /metrics HTTP endpoint; bound to loopback unless told otherwise."""

    def __init__(self, collector: StatsCollector, port: int, addr: str) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.port, self.addr = port, addr
        self._server: WSGIServer | None = None
        self._thread: Thread | None = None

    def start(self) -> None:
        self._server, self._thread = start_http_server(self.port, addr=self.addr, registry=self.registry)
        log.info("metrics served", extra={"addr": self.addr, "port": self.bound_port})

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __repr__(self) -> str:
        return f"MetricsServer({self.addr}:{self.port})"
