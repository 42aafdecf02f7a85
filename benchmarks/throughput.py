"""Scenario `throughput`: closed-loop saves from 1, 8, 32, 64 client processes, sidecar vs direct.

Each process count gets its own freshly forked clients (each with its own
Client and its own redis-py connection); both targets run `duration` seconds
on them, the order flipping from one count to the next so neither always goes
first. Reports ops/s, the latency the closed loop saw, the ratio sidecar/direct, and what a save
costs the host in CPU: client + daemon + Redis against redis-py client + Redis.
"""

from __future__ import annotations

from typing import Any

from benchmarks import measure
from benchmarks.common import Run, closed_window
from benchmarks.load import HANDLERS
from benchmarks.pool import WorkerPool
from benchmarks.targets import NAMES


def run(ctx: Run) -> dict[str, Any]:
    settings = ctx.settings
    levels = []
    for number, processes in enumerate(settings.processes):
        level: dict[str, Any] = {"processes": processes}
        with WorkerPool(processes, ctx.endpoints, HANDLERS) as pool:
            pool.run("prepare", {"targets": list(NAMES), "tag": ctx.tag})
            with ctx.usage(pool) as usage:
                for name in NAMES if number % 2 == 0 else tuple(reversed(NAMES)):
                    window = closed_window(
                        pool, usage, target=name, workload="save", duration=settings.duration, tag=ctx.tag
                    )
                    window.pop("per_op_us")
                    window.pop("multidraws")
                    window["host_cpu_us_per_op"] = measure.host_cpu_parts(window, name)
                    level[name] = window
                    lat = window["latency_us"]
                    ctx.progress(
                        f"throughput {processes:3} processes {name:7}: {window['ops_per_s']:.0f} ops/s, "
                        f"p50 {lat['p50']} µs, p99 {lat['p99']} µs, errors {window['errors']}, "
                        f"other load {window['other_load_cores']} cores"
                    )
            rss = usage.rss_mb()
        level["ratio"] = measure.ratio(level["sidecar"]["ops_per_s"], level["direct"]["ops_per_s"])
        level["host_cpu_ratio"] = _host_ratio(level["sidecar"], level["direct"])
        level["daemon_rss_max_mb"] = rss.get("daemon")
        level["redis_rss_max_mb"] = rss.get("redis")
        level["replicas_rss_max_mb"] = rss.get("replicas")
        levels.append(level)
    return {"duration_s": settings.duration, "levels": levels}


def _host_ratio(sidecar: dict[str, Any], direct: dict[str, Any]) -> float | None:
    """Total host CPU per save, sidecar over direct (None when either total is unknown)."""
    a, b = sidecar["host_cpu_us_per_op"], direct["host_cpu_us_per_op"]
    return None if a is None or b is None else measure.ratio(a["total"], b["total"])
