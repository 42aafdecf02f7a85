"""Counters and latency percentiles of the running daemon, for the `stats` op.

Cheap on the hot path: a counter bump and a deque append per request; sorting
happens only when someone asks.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

#: Recent latencies kept per op for percentiles.
LATENCY_SAMPLES = 4096
PERCENTILES = (50, 90, 99, 99.9)
#: Histogram upper bounds (seconds) of request latency, as Prometheus exposes them.
LATENCY_BUCKETS_S = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
#: The retryable codes a request gets while Redis is unreachable or stalled.
OUTAGE_CODES = frozenset({"redis_unavailable", "deadline_exceeded"})
#: Histogram upper bounds of commands per Redis pipeline batch.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class SweepCounts:
    """What sweeps did since start (the sweeper keeps them; stats and metrics read them)."""

    sweeps: int = 0
    #: Operations expired (their TTL passed with no complete or rollback).
    expired: int = 0
    #: Outcome events written after their operation ended: a dead daemon's, or a refused XADD's.
    published: int = 0
    trimmed: int = 0
    #: The outcome stream's length after the last trim, and whether a consumer group that has
    #: not acknowledged older events holds it over its cap.
    stream_length: int = 0
    stream_held: bool = False
    errors: int = 0


class Stats:
    """Process-wide counters; one instance per daemon, owned by the server state."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.latencies: dict[str, deque[float]] = {}
        #: Per op: counts per LATENCY_BUCKETS_S bucket (last one: above all bounds), and the sum.
        self.latency_buckets: dict[str, list[int]] = {}
        self.latency_sums: dict[str, float] = {}
        self.batch_buckets = [0] * (len(BATCH_BUCKETS) + 1)
        self.redis_retries = 0
        self.redis_connects = 0
        self.batches = 0
        self.batched_commands = 0
        self.max_batch = 0
        self.connections = 0
        self.connections_total = 0
        self.connections_refused = 0
        self.in_flight = 0
        #: What the sweeper did (expiries, events it wrote, the outcome stream's length).
        self.sweeps = SweepCounts()

    def record(self, op: str, code: str, seconds: float) -> None:
        self.requests[op, code] += 1
        samples = self.latencies.get(op)
        if samples is None:
            samples = self.latencies[op] = deque(maxlen=LATENCY_SAMPLES)
            self.latency_buckets[op] = [0] * (len(LATENCY_BUCKETS_S) + 1)
            self.latency_sums[op] = 0.0
        samples.append(seconds)
        self.latency_buckets[op][bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sums[op] += seconds

    def outage_failures(self) -> int:
        """Requests answered with an error a Redis outage gives (for the outage log's counts)."""
        return sum(n for (_, code), n in self.requests.items() if code in OUTAGE_CODES)

    def count_retry(self) -> None:
        self.redis_retries += 1

    def count_connect(self) -> None:
        self.redis_connects += 1

    def count_batch(self, size: int) -> None:
        self.batches += 1
        self.batched_commands += size
        self.batch_buckets[bisect_left(BATCH_BUCKETS, size)] += 1
        self.max_batch = max(self.max_batch, size)

    def snapshot(self) -> dict[str, Any]:
        by_op: dict[str, dict[str, int]] = {}
        for (op, code), count in self.requests.items():
            by_op.setdefault(op, {})[code] = count
        latency: dict[str, dict[str, float]] = {}
        for op, samples in self.latencies.items():
            ordered = sorted(samples)
            latency[op] = {
                f"p{p:g}_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000, 3)
                for p in PERCENTILES
            }
        return {
            "uptime_s": int(time.time() - self.started),
            "requests": by_op,
            "latency": latency,
            "redis_retries": self.redis_retries,
            "redis_connects": self.redis_connects,
            "batches": self.batches,
            "mean_batch": round(self.batched_commands / self.batches, 2) if self.batches else 0,
            "max_batch": self.max_batch,
            "connections": self.connections,
            "connections_total": self.connections_total,
            "connections_refused": self.connections_refused,
            "in_flight": self.in_flight,
            "sweeps": self.sweeps.sweeps,
            "expired": self.sweeps.expired,
            "events_written_late": self.sweeps.published,
            "outcome_stream_length": self.sweeps.stream_length,
            "outcome_stream_over_cap": self.sweeps.stream_held,
        }
