"""What every scenario shares: the run context (settings, endpoints, progress) and the closed-loop window.

A closed-loop window starts every worker at one agreed time, reads the daemon's
and Redis's CPU at the window's start and end, then gathers the latencies; it
is how throughput, sizes and mix measure.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from benchmarks import measure
from benchmarks.env import Environment
from benchmarks.load import sleep_until
from benchmarks.pool import Endpoints, WorkerPool
from benchmarks.settings import Settings

#: Time between sending a command and its agreed start, so every worker is waiting when it comes.
START_MARGIN_S = 0.1


@dataclass
class Run:
    settings: Settings
    env: Environment
    #: Part of every lock key this run writes, so a run against a shared Redis can clean up after itself.
    tag: str
    began: float = field(default_factory=time.monotonic)

    @property
    def endpoints(self) -> Endpoints:
        env = self.env
        return Endpoints(env.socket_path, env.redis_url, env.prefix, env.cluster_seeds)

    def progress(self, message: str) -> None:
        print(f"[{time.monotonic() - self.began:6.1f}s] {message}", file=sys.stderr, flush=True)

    def usage(self, pool: WorkerPool) -> measure.Usage:
        """CPU and RSS of the daemon and Redis, with the harness's own CPU (this process and `pool`)."""
        return measure.Usage(self.env.pids, [os.getpid(), *pool.pids])


def closed_window(
    pool: WorkerPool,
    usage: measure.Usage,
    *,
    target: str,
    workload: str,
    duration: float,
    tag: str,
    **params: Any,
) -> dict[str, Any]:
    """Run one closed-loop window on every worker; return latencies per op, ops/s and CPU per 1k ops."""
    start_at = time.monotonic() + START_MARGIN_S + 0.002 * pool.count
    end_at = start_at + duration
    command = {"target": target, "workload": workload, "start_at": start_at, "end_at": end_at, "tag": tag}
    pool.send("closed", {**command, **params})
    sleep_until(start_at)
    cpu_before = usage.cpu()
    replies = pool.gather()
    cpu = measure.cpu_delta(cpu_before, usage.cpu())
    elapsed = max(reply["elapsed_s"] for reply in replies)
    names = sorted({name for reply in replies for name in reply["ops"]})
    per_op = {name: measure.merge(r["ops"].get(name, ()) for r in replies) for name in names}
    ops = sum(len(latencies) for latencies in per_op.values())
    per_1k = measure.cpu_per_1k_ops(cpu, ops)
    return {
        "ops": ops,
        "ops_per_s": round(ops / elapsed, 1) if elapsed > 0 else None,
        "errors": sum(reply["errors"] for reply in replies),
        "elapsed_s": round(elapsed, 3),
        "latency_us": measure.summarize(measure.merge(per_op.values())),
        "per_op_us": {name: measure.summarize(latencies) for name, latencies in per_op.items()},
        "multidraws": sum(reply["multidraws"] for reply in replies),
        "other_load_cores": measure.other_cores(cpu),
        "daemon_cpu_s_per_1k_ops": per_1k.get("daemon"),
        "redis_cpu_s_per_1k_ops": per_1k.get("redis"),
        "replicas_cpu_s_per_1k_ops": per_1k.get("replicas"),
        "client_cpu_us_per_op": (
            round(sum(r["client_cpu_s"] for r in replies) / ops * 1e6, 1) if ops else None
        ),
    }
