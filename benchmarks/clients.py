"""Scenario `clients`: one process's saves/s through each client API — threads, a shared pool, asyncio.

Every shape runs in one worker process against the same daemon and Redis, one
after another, `duration` seconds each, on the same ~1 KB state streams as the
other scenarios (workloads.py):

- one thread, one blocking `Client`, sequential saves — the reference;
- 16 threads sharing ONE `Client` (its pool: the default 8 connections, then 16);
- 16 threads, each with its OWN `Client`;
- one event loop (asyncio's, then uvloop) with one `AsyncClient` and 16, then 64, concurrent tasks;
- the direct redis-py counterpart of each (one thread; 16 threads sharing one
  `redis.Redis`; `redis.asyncio` with 16 and 64 tasks on each loop).

Reported per shape: saves/s, the ratio to the same target's single thread, the
ratio sidecar/direct against its direct counterpart (as throughput.py states
it), closed-loop p50/p99, CPU per op of the daemon, Redis and the process, and
their total per save (the host's CPU, set against its direct counterpart's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from benchmarks import measure
from benchmarks.common import Run
from benchmarks.concurrency import HANDLERS, Shape
from benchmarks.load import sleep_until
from benchmarks.pool import WorkerPool
from benchmarks.report import Column, fmt, table
from benchmarks.settings import Settings

#: Threads or tasks of the concurrent shapes: what the issue asks to compare.
CONCURRENCY = 16
#: The larger asyncio task count: where a multiplexed connection should pull ahead.
MANY_TASKS = 64
#: Seconds per row under --quick at most: 14 rows must fit the smoke run's budget (< 30 s in all).
QUICK_ROW_S = 0.5

SHAPES = (
    Shape("thread", "sidecar", "threads", 1, baseline="direct-thread"),
    Shape("direct-thread", "direct", "threads", 1),
    Shape("threads-shared", "sidecar", "threads", CONCURRENCY, baseline="direct-threads"),
    Shape(
        "threads-shared-pool16",
        "sidecar",
        "threads",
        CONCURRENCY,
        pool_size=CONCURRENCY,
        baseline="direct-threads",
    ),
    Shape("threads-own", "sidecar", "threads", CONCURRENCY, clients=CONCURRENCY, baseline="direct-threads"),
    Shape("direct-threads", "direct", "threads", CONCURRENCY),
    *(
        shape
        for loop in ("asyncio", "uvloop")
        for tasks in (CONCURRENCY, MANY_TASKS)
        for shape in (
            Shape(
                f"{loop}-{tasks}", "sidecar", "asyncio", tasks, loop=loop, baseline=f"direct-{loop}-{tasks}"
            ),
            Shape(f"direct-{loop}-{tasks}", "direct", "asyncio", tasks, loop=loop),
        )
    ),
)


def describe(shape: Shape) -> str:
    """The shape in words, as the table shows it."""
    if shape.mode == "asyncio":
        client = "1 AsyncClient" if shape.target == "sidecar" else "1 redis.asyncio.Redis"
        return f"{shape.loop}: {client}, {shape.workers} tasks"
    if shape.target == "direct":
        return "1 thread, 1 redis.Redis" if shape.workers == 1 else f"{shape.workers} threads, 1 redis.Redis"
    if shape.workers == 1:
        return "1 thread, 1 Client"
    if shape.clients > 1:
        return f"{shape.workers} threads, {shape.clients} Clients"
    return f"{shape.workers} threads, 1 Client (pool_size {shape.pool_size or 'default 8'})"


def row_seconds(settings: Settings) -> float:
    """How long each row is measured: `duration`, shortened under --quick."""
    return min(settings.duration, QUICK_ROW_S) if settings.quick else settings.duration


def _window(ctx: Run, pool: WorkerPool, usage: measure.Usage, shape: Shape) -> dict[str, Any]:
    """One shape's closed-loop window: CPU read at the start the worker announces and after its reply."""
    pool.send("window", {"shape": shape, "duration": row_seconds(ctx.settings), "tag": ctx.tag})
    (bounds,) = pool.gather()
    sleep_until(bounds["start_at"])
    cpu_before = usage.cpu()
    (reply,) = pool.gather()
    cpu = measure.cpu_delta(cpu_before, usage.cpu())
    latencies = reply["ops"]["save"]
    ops, elapsed = len(latencies), reply["elapsed_s"]
    per_1k = measure.cpu_per_1k_ops(cpu, ops)
    row = {
        **asdict(shape),
        "label": describe(shape),
        "ops": ops,
        "ops_per_s": round(ops / elapsed, 1) if elapsed > 0 else None,
        "errors": reply["errors"],
        "elapsed_s": round(elapsed, 3),
        "latency_us": measure.summarize(latencies),
        "other_load_cores": measure.other_cores(cpu),
        "daemon_cpu_s_per_1k_ops": per_1k.get("daemon"),
        "redis_cpu_s_per_1k_ops": per_1k.get("redis"),
        "replicas_cpu_s_per_1k_ops": per_1k.get("replicas"),
        "client_cpu_us_per_op": round(reply["client_cpu_s"] / ops * 1e6, 1) if ops else None,
    }
    row["host_cpu_us_per_op"] = measure.host_cpu_parts(row, shape.target)
    return row


def run(ctx: Run) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with WorkerPool(1, ctx.endpoints, HANDLERS) as pool, ctx.usage(pool) as usage:
        for shape in SHAPES:
            row = _window(ctx, pool, usage, shape)
            rows.append(row)
            lat = row["latency_us"]
            ctx.progress(
                f"clients {shape.target:7} {row['label']}: {row['ops_per_s'] or 0:.0f} saves/s, "
                f"p50 {lat['p50']} µs, p99 {lat['p99']} µs, errors {row['errors']}, "
                f"other load {row['other_load_cores']} cores"
            )
        rss = usage.rss_mb()
    by_key = {row["key"]: row for row in rows}
    for row in rows:
        single = by_key["thread" if row["target"] == "sidecar" else "direct-thread"]
        row["vs_one_thread"] = measure.ratio(row["ops_per_s"], single["ops_per_s"])
        baseline = by_key.get(row["baseline"] or "")
        row["ratio"] = measure.ratio(row["ops_per_s"], baseline["ops_per_s"]) if baseline else None
        host, base_host = row["host_cpu_us_per_op"], baseline and baseline["host_cpu_us_per_op"]
        row["host_cpu_ratio"] = (
            measure.ratio(host["total"], base_host["total"]) if host and base_host else None
        )
    return {
        "duration_s": row_seconds(ctx.settings),
        "rows": rows,
        "daemon_rss_max_mb": rss.get("daemon"),
        "redis_rss_max_mb": rss.get("redis"),
        "replicas_rss_max_mb": rss.get("replicas"),
    }


def markdown(section: Mapping[str, Any]) -> list[str]:
    """The scenario's table for results.md."""
    rows = section["rows"]
    out = [
        f"## clients — one process: threads, a shared pool, asyncio; {section['duration_s']} s per row",
        "",
        "Closed loop, ~1 KB saves. `vs 1 thread`: saves/s over the same target's single thread; "
        "`sidecar/direct`: over the direct row of the same shape (16 threads sharing one redis.Redis for "
        "every 16-thread row; redis.asyncio with as many tasks on the same loop for the asyncio rows).",
        "",
    ]
    columns: list[Column] = [
        ("target", lambda r: r["target"]),
        ("how", lambda r: r["label"]),
        ("saves/s", lambda r: fmt(r["ops_per_s"])),
        ("vs 1 thread", lambda r: fmt(r["vs_one_thread"], 2)),
        ("sidecar/direct", lambda r: fmt(r["ratio"], 2)),
        ("p50 / p99 µs", lambda r: f"{fmt(r['latency_us']['p50'])} / {fmt(r['latency_us']['p99'])}"),
        ("daemon CPU s/1k ops", lambda r: fmt(r["daemon_cpu_s_per_1k_ops"], 3)),
        ("redis CPU s/1k ops", lambda r: fmt(r["redis_cpu_s_per_1k_ops"], 3)),
        ("client CPU µs/op", lambda r: fmt(r["client_cpu_us_per_op"])),
        ("host CPU µs/save", lambda r: fmt(r["host_cpu_us_per_op"] and r["host_cpu_us_per_op"]["total"])),
        ("errors", lambda r: r["errors"]),
        ("other load (cores)", lambda r: fmt(r["other_load_cores"], 2)),
    ]
    if any(r.get("replicas_cpu_s_per_1k_ops") is not None for r in rows):
        columns.insert(8, ("replicas CPU s/1k ops", lambda r: fmt(r["replicas_cpu_s_per_1k_ops"], 3)))
    out += table(columns, rows)
    return [
        *out,
        f"Max RSS over the scenario: daemon {fmt(section.get('daemon_rss_max_mb'), 1)} MB, "
        f"redis {fmt(section.get('redis_rss_max_mb'), 1)} MB.",
        "",
    ]
