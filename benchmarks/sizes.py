"""Scenario `sizes`: sequential saves of 10, 100 and 1000-draw states (with prizes), sidecar vs direct.

One client process saves back to back (closed loop, one request at a time),
`samples` saves or `duration` seconds per (size, target), whichever ends first.
A save appends one draw, so a state holds about `draws` draws (see workloads.py).
"""

from __future__ import annotations

from typing import Any

from benchmarks import measure
from benchmarks.common import Run, closed_window
from benchmarks.load import HANDLERS
from benchmarks.pool import WorkerPool
from benchmarks.targets import NAMES
from benchmarks.workloads import sample_sizes


def run(ctx: Run) -> dict[str, Any]:
    settings = ctx.settings
    rows = []
    with WorkerPool(1, ctx.endpoints, HANDLERS) as pool:
        pool.run("prepare", {"targets": list(NAMES), "tag": ctx.tag})
        with ctx.usage(pool) as usage:
            for draws in settings.sizes:
                row: dict[str, Any] = {"draws": draws, "state_json_bytes": sample_sizes(draws, prizes=True)}
                for name in NAMES:
                    window = closed_window(
                        pool,
                        usage,
                        target=name,
                        workload="save",
                        duration=settings.duration,
                        tag=ctx.tag,
                        draws=draws,
                        prizes=True,
                        max_ops=settings.samples,
                    )
                    window.pop("per_op_us")
                    window.pop("multidraws")
                    row[name] = window
                    lat = window["latency_us"]
                    ctx.progress(
                        f"sizes {draws:5} draws {name:7}: {window['ops']} saves, "
                        f"p50 {lat['p50']} µs, p99 {lat['p99']} µs, "
                        f"other load {window['other_load_cores']} cores"
                    )
                row["added_us"] = measure.added_us(row["sidecar"]["latency_us"], row["direct"]["latency_us"])
                rows.append(row)
        rss = usage.rss_mb()
    return {
        "rows": rows,
        "daemon_rss_max_mb": rss.get("daemon"),
        "redis_rss_max_mb": rss.get("redis"),
        "replicas_rss_max_mb": rss.get("replicas"),
    }
