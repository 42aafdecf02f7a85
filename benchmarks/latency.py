"""Scenario `latency`: paced open-loop saves at a target rate, sidecar and direct in alternating blocks.

The whole schedule is laid out before the first send: a short unrecorded
warm-up per target, then blocks of `block` seconds alternating sidecar,
direct, sidecar, ... with a gap between blocks so a late reply of one block
cannot spill into the next. Drift (a noisy neighbour, CPU frequency, Redis
growing) hits both targets alike. See load.py for how the senders pace and
why latency counts from the intended send time.
"""

from __future__ import annotations

import math
import time
from typing import Any

from benchmarks import measure
from benchmarks.common import Run
from benchmarks.load import HANDLERS, sleep_until
from benchmarks.pool import WorkerPool
from benchmarks.settings import Settings
from benchmarks.targets import NAMES
from benchmarks.workloads import DEFAULT_DRAWS, sample_sizes

#: Quiet time after each block: late replies drain here, not into the next block.
GAP_S = 0.2
#: Time from laying out the schedule to its first slot.
LEAD_S = 0.3


def schedule(settings: Settings, first_at: float) -> list[dict[str, Any]]:
    """Every block in order, with its absolute start: warm-ups, then alternating recorded blocks."""
    layout = [(name, settings.warmup, False) for name in NAMES]
    per_target = max(1, math.ceil(settings.duration / settings.block - 1e-9))
    for _ in range(per_target):
        layout.extend((name, settings.block, True) for name in NAMES)
    blocks = []
    at = first_at
    for target, length, recorded in layout:
        slots = max(1, round(settings.rate * length))
        blocks.append({"target": target, "start": at, "slots": slots, "length": length, "recorded": recorded})
        at += length + GAP_S
    return blocks


def _block_summary(
    replies: list[dict[str, Any]], start: float, length: float, cpu: dict[str, float]
) -> dict[str, Any]:
    latency = measure.merge(r["latency"] for r in replies)
    lag = measure.merge(r["lag"] for r in replies)
    took = max(length, max(r["last_done"] for r in replies) - start)
    return {
        "saves": len(latency),
        "errors": sum(r["errors"] for r in replies),
        "achieved_rate": round(len(latency) / took, 1),
        "overrun_ms": round(max(0.0, took - length) * 1000, 1),
        "latency_us": measure.summarize(latency),
        "send_lag_p99_us": measure.summarize(lag)["p99"],
        "other_load_cores": measure.other_cores(cpu),
    }


class _Totals:
    """One target's samples, time, errors and CPU over its recorded blocks."""

    def __init__(self) -> None:
        self.series = {key: measure.samples() for key in ("latency", "service", "lag")}
        self.seconds = 0.0
        self.errors = 0
        self.cpu: dict[str, float] = {}

    def add(self, replies: list[dict[str, Any]], summary: dict[str, Any], seconds: float, cpu: Any) -> None:
        for key, series in self.series.items():
            series.extend(measure.merge(r[key] for r in replies))
        self.seconds += seconds
        self.errors += summary["errors"]
        measure.add_cpu(self.cpu, cpu)

    def result(self) -> dict[str, Any]:
        ops = len(self.series["latency"])
        per_1k = measure.cpu_per_1k_ops(self.cpu, ops)
        return {
            "ops": ops,
            "ops_per_s": round(ops / self.seconds, 1) if self.seconds else None,
            "errors": self.errors,
            "latency_us": measure.summarize(self.series["latency"]),
            "service_us": measure.summarize(self.series["service"]),
            "send_lag_us": measure.summarize(self.series["lag"]),
            "daemon_cpu_s_per_1k_ops": per_1k.get("daemon"),
            "redis_cpu_s_per_1k_ops": per_1k.get("redis"),
            "replicas_cpu_s_per_1k_ops": per_1k.get("replicas"),
            "other_load_cores": measure.other_cores(self.cpu),
        }


def run(ctx: Run) -> dict[str, Any]:
    settings = ctx.settings
    totals = {name: _Totals() for name in NAMES}
    blocks_out: list[dict[str, Any]] = []
    with WorkerPool(settings.senders, ctx.endpoints, HANDLERS) as pool:
        pool.run("prepare", {"targets": list(NAMES), "tag": ctx.tag})
        with ctx.usage(pool) as usage:
            blocks = schedule(settings, time.monotonic() + LEAD_S)
            wire = [{key: b[key] for key in ("target", "start", "slots")} for b in blocks]
            pool.send(
                "paced", {"blocks": wire, "rate": settings.rate, "senders": settings.senders, "tag": ctx.tag}
            )
            recorded = sum(1 for b in blocks if b["recorded"])
            for block in blocks:
                sleep_until(block["start"])
                cpu_before = usage.cpu()
                replies = pool.gather()  # every sender's reply for this block: it is over
                cpu = measure.cpu_delta(cpu_before, usage.cpu())
                summary = _block_summary(replies, block["start"], block["length"], cpu)
                name = block["target"]
                if not block["recorded"]:
                    ctx.progress(f"latency warm-up {name}: {summary['saves']} saves")
                    continue
                totals[name].add(replies, summary, block["length"] + summary["overrun_ms"] / 1000, cpu)
                blocks_out.append({"index": len(blocks_out) + 1, "target": name, **summary})
                lat = summary["latency_us"]
                ctx.progress(
                    f"latency block {len(blocks_out)}/{recorded} {name:7}: {summary['saves']} saves at "
                    f"{summary['achieved_rate']:.0f}/s, p50 {lat['p50']} µs, p99 {lat['p99']} µs, "
                    f"send lag p99 {summary['send_lag_p99_us']} µs, "
                    f"other load {summary['other_load_cores']} cores"
                )
        rss = usage.rss_mb()
    result: dict[str, Any] = {
        "rate": settings.rate,
        "senders": settings.senders,
        "block_s": settings.block,
        "state_json_bytes": sample_sizes(DEFAULT_DRAWS, prizes=False),
        "blocks": blocks_out,
        **{name: totals[name].result() for name in NAMES},
    }
    result["added_us"] = measure.added_us(result["sidecar"]["latency_us"], result["direct"]["latency_us"])
    result["daemon_rss_max_mb"] = rss.get("daemon")
    result["redis_rss_max_mb"] = rss.get("redis")
    result["replicas_rss_max_mb"] = rss.get("replicas")
    return result
