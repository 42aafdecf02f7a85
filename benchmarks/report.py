"""The written results: results.json (everything) and results.md (the tables a person reads).

The plot lives in plot.py. Latencies are microseconds; "added" is sidecar minus
direct at the same percentile; CPU is seconds per 1000 operations, RSS the
largest sample over the scenario; "host CPU" is µs per save summed over every
process a save runs through (measure.host_cpu_parts).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PCTS = ("p50", "p90", "p99", "p99.9")
BOTH = ("sidecar", "direct")
Column = tuple[str, Callable[[Any], Any]]


def write_json(path: Path, results: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+,.0f}"


def table(columns: Sequence[Column], items: Iterable[Any]) -> list[str]:
    lines = ["| " + " | ".join(head for head, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell(item)) for _, cell in columns) + " |" for item in items]
    return [*lines, ""]


def _pair(key: str, digits: int = 3) -> Callable[[Any], str]:
    """`sidecar / direct` of one number of a row that holds both."""
    return lambda row: f"{fmt(row['sidecar'][key], digits)} / {fmt(row['direct'][key], digits)}"


def _p50_p99(window: Mapping[str, Any]) -> str:
    return f"{fmt(window['latency_us']['p50'])} / {fmt(window['latency_us']['p99'])}"


def _signed_at(key: str) -> Callable[[Any], str]:
    return lambda values: signed(values[key])


def _rss(section: Mapping[str, Any]) -> list[str]:
    replicas = section.get("replicas_rss_max_mb")
    return [
        f"Max RSS over the scenario: daemon {fmt(section.get('daemon_rss_max_mb'), 1)} MB, "
        f"redis {fmt(section.get('redis_rss_max_mb'), 1)} MB"
        + ("." if replicas is None else f" (masters, summed), replicas {fmt(replicas, 1)} MB."),
        "",
    ]


def _with_replicas(
    columns: list[Column], replicas: Column, rows: Iterable[Any], key: Callable[[Any], Any]
) -> list[Column]:
    """`columns` plus the replicas' CPU column when a row has it (a cluster run)."""
    if any(key(row).get("replicas_cpu_s_per_1k_ops") is not None for row in rows):
        at = next(i for i, (head, _) in enumerate(columns) if head.startswith("redis CPU")) + 1
        return [*columns[:at], replicas, *columns[at:]]
    return columns


def _latency(section: Mapping[str, Any]) -> list[str]:
    out = [
        f"## latency — paced open loop at {fmt(section['rate'])} saves/s, {section['senders']} sender "
        f"processes, {len(section['blocks'])} alternating blocks of {section['block_s']} s",
        "",
        f"State: ~{section['state_json_bytes']['mean']} bytes of JSON (~100 draws + metadata). Latency "
        "counts from each save's intended send time (no coordinated omission).",
        "",
    ]
    rows = [{"name": name, **section[name]} for name in BOTH]
    columns: list[Column] = [
        ("target", lambda r: r["name"]),
        *((f"{p} µs", lambda r, p=p: fmt(r["latency_us"][p])) for p in PCTS),
        ("max µs", lambda r: fmt(r["latency_us"]["max"])),
        ("ops/s", lambda r: fmt(r["ops_per_s"])),
        ("errors", lambda r: r["errors"]),
        ("send lag p99 µs", lambda r: fmt(r["send_lag_us"]["p99"])),
        ("daemon CPU s/1k ops", lambda r: fmt(r["daemon_cpu_s_per_1k_ops"], 3)),
        ("redis CPU s/1k ops", lambda r: fmt(r["redis_cpu_s_per_1k_ops"], 3)),
        ("other load (cores)", lambda r: fmt(r["other_load_cores"], 2)),
    ]
    replicas: Column = ("replicas CPU s/1k ops", lambda r: fmt(r["replicas_cpu_s_per_1k_ops"], 3))
    out += table(_with_replicas(columns, replicas, rows, lambda r: r), rows)
    out += ["Added by the sidecar (sidecar minus direct, µs):", ""]
    out += table([(p, _signed_at(p)) for p in PCTS], [section["added_us"]])
    out += ["Service time (from the actual send, not the intended one):", ""]
    out += table(
        [
            ("target", lambda r: r["name"]),
            *((f"{p} µs", lambda r, p=p: fmt(r["service_us"][p])) for p in PCTS),
        ],
        rows,
    )
    out += ["Per block, in the order run:", ""]
    out += table(
        [
            ("block", lambda b: b["index"]),
            ("target", lambda b: b["target"]),
            ("saves", lambda b: b["saves"]),
            ("achieved/s", lambda b: fmt(b["achieved_rate"])),
            *((f"{p} µs", lambda b, p=p: fmt(b["latency_us"][p])) for p in ("p50", "p99", "p99.9")),
            ("send lag p99 µs", lambda b: fmt(b["send_lag_p99_us"])),
            ("overrun ms", lambda b: fmt(b["overrun_ms"], 1)),
            ("other load (cores)", lambda b: fmt(b["other_load_cores"], 2)),
        ],
        section["blocks"],
    )
    return out + _rss(section)


def _throughput(section: Mapping[str, Any]) -> list[str]:
    out = [f"## throughput — closed loop, {section['duration_s']} s per target per process count", ""]
    replicas: Column = ("replicas CPU s/1k ops (sidecar / direct)", _pair("replicas_cpu_s_per_1k_ops"))
    columns: list[Column] = [
        ("processes", lambda r: r["processes"]),
        ("sidecar ops/s", lambda r: fmt(r["sidecar"]["ops_per_s"])),
        ("direct ops/s", lambda r: fmt(r["direct"]["ops_per_s"])),
        ("sidecar/direct", lambda r: fmt(r["ratio"], 2)),
        ("sidecar p50 / p99 µs", lambda r: _p50_p99(r["sidecar"])),
        ("direct p50 / p99 µs", lambda r: _p50_p99(r["direct"])),
        ("daemon CPU s/1k ops", lambda r: fmt(r["sidecar"]["daemon_cpu_s_per_1k_ops"], 3)),
        ("redis CPU s/1k ops (sidecar / direct)", _pair("redis_cpu_s_per_1k_ops")),
        ("client CPU µs/op (sidecar / direct)", _pair("client_cpu_us_per_op", 0)),
        (
            "host CPU µs/save (sidecar / direct)",
            lambda r: f"{_host_total(r['sidecar'])} / {_host_total(r['direct'])}",
        ),
        ("daemon RSS MB", lambda r: fmt(r["daemon_rss_max_mb"], 1)),
        ("errors", lambda r: r["sidecar"]["errors"] + r["direct"]["errors"]),
        ("other load (cores)", _pair("other_load_cores", 2)),
    ]
    levels = section["levels"]
    return out + table(_with_replicas(columns, replicas, levels, lambda r: r["sidecar"]), levels)


def _sizes(section: Mapping[str, Any]) -> list[str]:
    out = ["## sizes — sequential saves from one client, results and prize_results filled", ""]
    replicas: Column = ("replicas CPU s/1k ops (sidecar / direct)", _pair("replicas_cpu_s_per_1k_ops"))
    columns: list[Column] = [
        ("draws", lambda r: r["draws"]),
        ("JSON bytes", lambda r: fmt(r["state_json_bytes"]["mean"])),
        *(
            (f"{name} {p} µs", lambda r, name=name, p=p: fmt(r[name]["latency_us"][p]))
            for name in BOTH
            for p in ("p50", "p99")
        ),
        ("added p50 µs", lambda r: signed(r["added_us"]["p50"])),
        ("added p99 µs", lambda r: signed(r["added_us"]["p99"])),
        ("saves/s (sidecar / direct)", _pair("ops_per_s", 0)),
        ("daemon CPU s/1k ops", lambda r: fmt(r["sidecar"]["daemon_cpu_s_per_1k_ops"], 3)),
        ("redis CPU s/1k ops (sidecar / direct)", _pair("redis_cpu_s_per_1k_ops")),
        ("client CPU µs/op (sidecar / direct)", _pair("client_cpu_us_per_op", 0)),
        ("other load (cores)", _pair("other_load_cores", 2)),
    ]
    rows = section["rows"]
    out += table(_with_replicas(columns, replicas, rows, lambda r: r["sidecar"]), rows)
    return out + _rss(section)


def _mix(section: Mapping[str, Any]) -> list[str]:
    side, direct = section["sidecar"], section["direct"]
    out = [
        f"## mix — {section['clients']} clients running whole 10-draw multi-draws, "
        f"{section['duration_s']} s per target",
        "",
    ]
    columns: list[Column] = [
        ("target", lambda r: r[0]),
        ("ops/s", lambda r: fmt(r[1]["ops_per_s"])),
        ("multi-draws/s", lambda r: fmt(r[1]["multidraws_per_s"])),
        ("p50 / p99 µs (all ops)", lambda r: _p50_p99(r[1])),
        ("daemon CPU s/1k ops", lambda r: fmt(r[1]["daemon_cpu_s_per_1k_ops"], 3)),
        ("redis CPU s/1k ops", lambda r: fmt(r[1]["redis_cpu_s_per_1k_ops"], 3)),
        ("errors", lambda r: r[1]["errors"]),
        ("other load (cores)", lambda r: fmt(r[1]["other_load_cores"], 2)),
    ]
    replicas: Column = ("replicas CPU s/1k ops", lambda r: fmt(r[1]["replicas_cpu_s_per_1k_ops"], 3))
    targets = [("sidecar", side), ("direct", direct)]
    out += table(_with_replicas(columns, replicas, targets, lambda r: r[1]), targets)
    out += [f"sidecar/direct ops/s: {fmt(section['ratio'], 2)}. Per operation:", ""]
    ops = [
        (op, lat, direct["per_op_us"].get(op, {}), section["added_us"].get(op, {}))
        for op, lat in side["per_op_us"].items()
    ]
    out += table(
        [
            ("op", lambda r: r[0]),
            ("count (sidecar)", lambda r: r[1]["count"]),
            *((f"sidecar {p} µs", lambda r, p=p: fmt(r[1][p])) for p in ("p50", "p99", "p99.9")),
            *((f"direct {p} µs", lambda r, p=p: fmt(r[2].get(p))) for p in ("p50", "p99", "p99.9")),
            ("added p50 µs", lambda r: signed(r[3].get("p50"))),
            ("added p99 µs", lambda r: signed(r[3].get("p99"))),
        ],
        ops,
    )
    return out + _rss(section)


def _host_total(window: Mapping[str, Any]) -> str:
    parts = window.get("host_cpu_us_per_op")
    return fmt(parts and parts["total"])


def _host_redis(parts: Mapping[str, float] | None) -> str:
    """Redis's share, with the replicas' added as `+ N` on a cluster."""
    if parts is None:
        return "—"
    replicas = parts.get("replicas")
    return fmt(parts["redis"]) + ("" if replicas is None else f" + {fmt(replicas)}")


def host_cpu_rows(scenarios: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Total host CPU per save, sidecar beside direct: each throughput level, each clients shape."""
    rows = []
    for level in scenarios.get("throughput", {}).get("levels", ()):
        rows.append(
            {
                "where": f"throughput, {level['processes']} processes",
                "short": f"{level['processes']} proc",
                "sidecar": level["sidecar"]["host_cpu_us_per_op"],
                "direct": level["direct"]["host_cpu_us_per_op"],
                "ratio": level["host_cpu_ratio"],
                "other_load": (level["sidecar"]["other_load_cores"], level["direct"]["other_load_cores"]),
            }
        )
    by_key = {row["key"]: row for row in scenarios.get("clients", {}).get("rows", ())}
    for row in by_key.values():
        if row["target"] == "sidecar" and row["baseline"] in by_key:
            rows.append(
                {
                    "where": f"clients, {row['label']}",
                    "short": row["key"],
                    "sidecar": row["host_cpu_us_per_op"],
                    "direct": by_key[row["baseline"]]["host_cpu_us_per_op"],
                    "ratio": row["host_cpu_ratio"],
                    "other_load": (row["other_load_cores"], by_key[row["baseline"]]["other_load_cores"]),
                }
            )
    return rows


def _host_cpu(scenarios: Mapping[str, Any]) -> list[str]:
    rows = host_cpu_rows(scenarios)
    if not rows:
        return []
    out = [
        "## total host CPU per save — what a game host pays",
        "",
        "µs of CPU per save on the host, from the same closed-loop windows as the tables above: sidecar = "
        "client + daemon + Redis, direct = redis-py client + Redis (on a cluster, Redis is the masters + "
        "the replicas). The clients rows set each shape beside its direct counterpart.",
        "",
    ]

    def part(target: str, name: str) -> Callable[[Any], str]:
        return lambda r: fmt(r[target] and r[target].get(name))

    columns: list[Column] = [
        ("where", lambda r: r["where"]),
        ("sidecar client", part("sidecar", "client")),
        ("daemon", part("sidecar", "daemon")),
        ("Redis", lambda r: _host_redis(r["sidecar"])),
        ("**sidecar total**", lambda r: f"**{fmt(r['sidecar'] and r['sidecar']['total'])}**"),
        ("direct client", part("direct", "client")),
        ("Redis", lambda r: _host_redis(r["direct"])),
        ("**direct total**", lambda r: f"**{fmt(r['direct'] and r['direct']['total'])}**"),
        ("sidecar/direct", lambda r: fmt(r["ratio"], 2)),
        ("other load (cores)", lambda r: f"{fmt(r['other_load'][0], 2)} / {fmt(r['other_load'][1], 2)}"),
    ]
    return out + table(columns, rows)


def _clients(section: Mapping[str, Any]) -> list[str]:
    from benchmarks.clients import markdown  # imported here: clients.py builds on this module's table

    return markdown(section)


SECTIONS = {"latency": _latency, "throughput": _throughput, "sizes": _sizes, "mix": _mix, "clients": _clients}


def _topology(meta: Mapping[str, Any]) -> list[str]:
    """Which Redis ran, and what its CPU figures cover."""
    redis_meta = meta.get("redis", {})
    if meta.get("topology", "standalone") != "cluster":
        return [
            f"Topology: **standalone** — one Redis ({redis_meta.get('transport', '?')}); "
            "redis CPU is that process's.",
            "",
        ]
    keys = ", ".join(f"{node} {fmt(count)}" for node, count in redis_meta["keys_per_master"].items())
    return [
        f"Topology: **cluster** — {redis_meta['masters']} masters + {redis_meta['replicas']} replicas on "
        f"{redis_meta['transport']}; the daemon runs with `--redis-cluster`, direct is `redis.RedisCluster`. "
        "Redis CPU and RSS are the masters' summed; the replicas' (which apply every propagated write) are "
        f"shown apart. Keys per master at the end: {keys}. "
        f"Master changed role during the run: {'YES' if redis_meta['masters_changed'] else 'no'}.",
        "",
    ]


def markdown(results: Mapping[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# drawstate benchmark ({meta.get('topology', 'standalone')}) — {meta['started_at']}",
        "",
        f"`{meta['command']}` · {'quick' if meta['quick'] else 'full'} run in {meta['wall_s']} s · "
        f"{meta['cpus']} CPUs · Python {meta['python']} · Redis {meta['redis_version']} "
        f"({'AOF everysec' if meta['redis_aof'] else 'no persistence'}, {meta['environment']}) · "
        f"redis-py {meta['redis_py']} with{'' if meta['hiredis'] else 'out'} hiredis · "
        f"daemon hot path {meta.get('daemon_hot_path') or '?'} · "
        f"commit {meta['commit']} · load average {meta['loadavg_1m_before']} before, "
        f"{meta['loadavg_1m_after']} after",
        "",
        "Sidecar: game process → drawstate.Client → unix socket → drawstated → Redis (Lua save script). "
        "Direct: game process → redis-py → `SET key json EX 3600` of the same JSON on the same Redis.",
        "",
        *_topology(meta),
    ]
    for name, section in results["scenarios"].items():
        lines += SECTIONS[name](section)
    lines += _host_cpu(results["scenarios"])
    return "\n".join(lines)


def write_markdown(path: Path, results: Mapping[str, Any]) -> None:
    path.write_text(markdown(results))
