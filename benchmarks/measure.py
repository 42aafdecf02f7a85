"""Numbers from samples and from /proc: latency percentiles, CPU time and RSS of a process.

Latencies travel as `array("d")` of seconds (compact to pickle between processes)
and are reported in microseconds. CPU is utime+stime from /proc/<pid>/stat;
RSS is VmRSS from /proc/<pid>/status, sampled by a background thread, since a
peak between two reads would otherwise be missed. A name may stand for a group
of processes (a cluster's masters): its CPU and RSS are the group's sums.
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))
RSS_INTERVAL_S = 0.1
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def samples() -> array[float]:
    return array("d")


def merge(parts: Iterable[array[float]]) -> array[float]:
    merged = samples()
    for part in parts:
        merged.extend(part)
    return merged


def _percentile(ordered: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(latencies_s: Iterable[float]) -> dict[str, Any]:
    """count, mean, max and p50/p90/p99/p99.9 in µs (None when there are no samples)."""
    ordered = sorted(latencies_s)
    if not ordered:
        return {"count": 0, "mean": None, "max": None, **{name: None for name, _ in PERCENTILES}}
    summary: dict[str, Any] = {"count": len(ordered)}
    for name, q in PERCENTILES:
        summary[name] = round(_percentile(ordered, q) * 1e6, 1)
    summary["mean"] = round(sum(ordered) / len(ordered) * 1e6, 1)
    summary["max"] = round(ordered[-1] * 1e6, 1)
    return summary


def added_us(sidecar: Mapping[str, Any], direct: Mapping[str, Any]) -> dict[str, float | None]:
    """Microseconds the sidecar adds over direct Redis at each percentile."""
    added: dict[str, float | None] = {}
    for name, _ in PERCENTILES:
        a, b = sidecar.get(name), direct.get(name)
        added[name] = None if a is None or b is None else round(a - b, 1)
    return added


def ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 3)


# --- /proc --------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` in seconds; None when the process is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S  # utime, stime: fields 14 and 15


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_busy_seconds() -> float | None:
    """CPU seconds the whole machine spent busy (all cores) since boot, from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICKS_PER_S


def _group_sum(values: Iterable[float | int | None]) -> float | None:
    """The sum of what could be read; None when no process of the group could be."""
    read = [value for value in values if value is not None]
    return sum(read) if read else None


Pids = Mapping[str, int | Sequence[int] | None]


class Usage:
    """CPU snapshots and RSS peaks of named processes (e.g. daemon, redis) over one scenario.

    Start it after any worker processes are forked (it runs a thread) and use it as a
    context manager; `cpu()` is a snapshot to diff with `cpu_delta`. A snapshot also
    holds the harness's own CPU (`harness_pids`: this process and its workers) and the
    whole machine's, so `other_cores` can tell how much CPU something else was using.
    """

    def __init__(self, pids: Pids, harness_pids: Iterable[int] = ()) -> None:
        groups = {name: [pid] if isinstance(pid, int) else list(pid or ()) for name, pid in pids.items()}
        self.pids = {name: group for name, group in groups.items() if group}
        self.harness_pids = list(harness_pids)
        self.rss_max_kb: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def __enter__(self) -> Usage:
        self._read_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self._read_rss()

    def _sample(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_S):
            self._read_rss()

    def _read_rss(self) -> None:
        for name, group in self.pids.items():
            value = _group_sum(rss_kb(pid) for pid in group)
            if value is not None and value > self.rss_max_kb.get(name, 0):
                self.rss_max_kb[name] = int(value)

    def cpu(self) -> dict[str, float | None]:
        snapshot = {name: _group_sum(cpu_seconds(pid) for pid in group) for name, group in self.pids.items()}
        harness = [cpu_seconds(pid) for pid in self.harness_pids]
        snapshot["harness"] = sum(value for value in harness if value is not None)
        snapshot["machine"] = machine_busy_seconds()
        snapshot["wall"] = time.monotonic()
        return snapshot

    def rss_mb(self) -> dict[str, float]:
        return {name: round(kb / 1024, 1) for name, kb in self.rss_max_kb.items()}


def other_cores(delta: Mapping[str, float]) -> float | None:
    """Cores' worth of CPU used by processes outside the benchmark during a window (a noise gauge).

    Counts the daemon and Redis as outside when their pids are not known.
    """
    if "machine" not in delta or not delta.get("wall"):
        return None
    ours = sum(delta.get(name, 0.0) for name in ("daemon", "redis", "replicas", "harness"))
    return round(max(0.0, delta["machine"] - ours) / delta["wall"], 2)


def cpu_delta(before: Mapping[str, float | None], after: Mapping[str, float | None]) -> dict[str, float]:
    delta: dict[str, float] = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None:
            delta[name] = end - start
    return delta


def add_cpu(total: dict[str, float], delta: Mapping[str, float]) -> None:
    for name, seconds in delta.items():
        total[name] = total.get(name, 0.0) + seconds


def cpu_per_1k_ops(cpu: Mapping[str, float], ops: int) -> dict[str, float | None]:
    """CPU seconds each process spent per 1000 operations (None without operations)."""
    return {
        name: (round(seconds / (ops / 1000), 4) if ops else None)
        for name, seconds in cpu.items()
        if name in ("daemon", "redis", "replicas")
    }


#: The processes whose CPU a save costs the host, per target: the sidecar's client, daemon and
#: Redis; direct's redis-py client and Redis. On a cluster, the replicas are added to both.
HOST_PARTS = {"sidecar": ("client", "daemon", "redis", "replicas"), "direct": ("client", "redis", "replicas")}


def host_cpu_parts(window: Mapping[str, Any], target: str) -> dict[str, float] | None:
    """µs of CPU per op of each process a save runs through, and their `total`.

    From one closed-loop window's own figures (client CPU per op, the others per 1000 ops).
    None when the client's or Redis's CPU is unknown (a given Redis without its pid), or the
    sidecar's daemon's: a total missing a part would read as a saving.
    """
    per_op = {
        "client": window.get("client_cpu_us_per_op"),
        "daemon": _us_per_op(window.get("daemon_cpu_s_per_1k_ops")),
        "redis": _us_per_op(window.get("redis_cpu_s_per_1k_ops")),
        "replicas": _us_per_op(window.get("replicas_cpu_s_per_1k_ops")),
    }
    parts: dict[str, float] = {}
    for name in HOST_PARTS[target]:
        value = per_op[name]
        if value is None and name != "replicas":
            return None
        if value is not None:
            parts[name] = round(value, 1)
    parts["total"] = round(sum(parts.values()), 1)
    return parts


def _us_per_op(seconds_per_1k: float | None) -> float | None:
    return None if seconds_per_1k is None else seconds_per_1k * 1000
