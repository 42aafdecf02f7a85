"""Scenario `mix`: whole multi-draws from several clients — start, 10 saves, load, complete or roll back.

Each client process loops over 10-draw operations (results and prizes): save
the initial state, save after every draw, load it back, then complete it (90%)
or roll it back (10%). Reported per operation (start, save, load, complete,
rollback) and in total: operations and multi-draws per second. The direct
counterpart does the same with SET EX / GET / DEL / GETDEL and no index or
tombstones, so it is the floor, not an equal.
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
    result: dict[str, Any] = {"clients": settings.mix_clients, "duration_s": settings.duration}
    with WorkerPool(settings.mix_clients, ctx.endpoints, HANDLERS) as pool:
        pool.run("prepare", {"targets": list(NAMES), "tag": ctx.tag})
        with ctx.usage(pool) as usage:
            for name in NAMES:
                window = closed_window(
                    pool, usage, target=name, workload="mix", duration=settings.duration, tag=ctx.tag
                )
                window["multidraws_per_s"] = (
                    round(window["multidraws"] / window["elapsed_s"], 1) if window["elapsed_s"] else None
                )
                result[name] = window
                ctx.progress(
                    f"mix {name:7}: {window['ops_per_s']:.0f} ops/s, "
                    f"{window['multidraws_per_s']:.0f} multi-draws/s, errors {window['errors']}, "
                    f"other load {window['other_load_cores']} cores"
                )
        rss = usage.rss_mb()
    result["ratio"] = measure.ratio(result["sidecar"]["ops_per_s"], result["direct"]["ops_per_s"])
    result["added_us"] = {
        op: measure.added_us(result["sidecar"]["per_op_us"][op], result["direct"]["per_op_us"].get(op, {}))
        for op in result["sidecar"]["per_op_us"]
    }
    result["daemon_rss_max_mb"] = rss.get("daemon")
    result["redis_rss_max_mb"] = rss.get("redis")
    result["replicas_rss_max_mb"] = rss.get("replicas")
    return result
