"""results.png: latency percentiles sidecar vs direct, throughput vs concurrency, latency vs state size,
and the total host CPU per save (client + daemon + Redis against redis-py client + Redis).

matplotlib with the Agg backend (no display needed); a panel is drawn only for
a scenario that ran (the host CPU panel for throughput or clients), and a run
with none of them draws a note instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.report import host_cpu_rows

PCTS = ("p50", "p90", "p99", "p99.9")
COLORS = {"sidecar": "tab:orange", "direct": "tab:blue"}
#: Host CPU panel: each process's share of a bar, bottom to top, and its shade.
HOST_SHARES = (("client", 1.0), ("daemon", 0.7), ("redis", 0.45), ("replicas", 0.25))


def write_png(path: Path, results: Mapping[str, Any]) -> None:
    import matplotlib  # the bench extra; imported only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results["scenarios"]
    panels = [name for name in ("latency", "throughput", "sizes") if name in scenarios]
    if host_cpu_rows(scenarios):
        panels.append("host_cpu")
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4.5), squeeze=False)
    if not panels:
        axes[0][0].text(0.5, 0.5, "no latency, throughput or sizes results", ha="center", va="center")
        axes[0][0].axis("off")
    for ax, name in zip(axes[0], panels, strict=False):
        DRAW[name](ax, scenarios if name == "host_cpu" else scenarios[name])
    meta = results["meta"]
    title = f"drawstate sidecar vs direct redis-py, {meta.get('topology', 'standalone')} Redis"
    fig.suptitle(f"{title} — {meta['started_at']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency(ax: Any, section: Mapping[str, Any]) -> None:
    width = 0.38
    xs = range(len(PCTS))
    for offset, name in ((-width / 2, "sidecar"), (width / 2, "direct")):
        values = [section[name]["latency_us"][p] or 0 for p in PCTS]
        bars = ax.bar([x + offset for x in xs], values, width, label=name, color=COLORS[name])
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=7)
    ax.set_xticks(list(xs), PCTS)
    ax.set_yscale("log")
    ax.set_ylabel("latency from intended send (µs, log)")
    ax.set_title(f"latency at {section['rate']:.0f} saves/s (paced)")
    ax.legend()


def _throughput(ax: Any, section: Mapping[str, Any]) -> None:
    levels = section["levels"]
    procs = [level["processes"] for level in levels]
    for name in ("sidecar", "direct"):
        ax.plot(procs, [lv[name]["ops_per_s"] or 0 for lv in levels], "o-", label=name, color=COLORS[name])
    ax.set_xscale("log", base=2)
    ax.set_xticks(procs, [str(p) for p in procs])
    ax.set_xlabel("client processes (closed loop)")
    ax.set_ylabel("saves/s")
    ax.set_ylim(bottom=0)
    ax.set_title("throughput vs concurrency")
    ax.legend()


def _sizes(ax: Any, section: Mapping[str, Any]) -> None:
    rows = section["rows"]
    draws = [row["draws"] for row in rows]
    for name in ("sidecar", "direct"):
        for pct, style in (("p50", "o-"), ("p99", "s--")):
            values = [row[name]["latency_us"][pct] or 0 for row in rows]
            ax.plot(draws, values, style, label=f"{name} {pct}", color=COLORS[name])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(draws, [str(d) for d in draws])
    ax.set_xlabel("draws in the state (results + prizes)")
    ax.set_ylabel("save latency (µs, log)")
    ax.set_title("latency vs state size (sequential)")
    ax.legend(fontsize=8)


def _host_cpu(ax: Any, scenarios: Mapping[str, Any]) -> None:
    """Stacked bars of µs of CPU per save, sidecar beside direct, per throughput level and clients shape."""
    rows = host_cpu_rows(scenarios)
    width = 0.38
    for offset, target in ((-width / 2, "sidecar"), (width / 2, "direct")):
        xs = [x + offset for x in range(len(rows))]
        bottoms = [0.0] * len(rows)
        for share, alpha in HOST_SHARES:
            heights = [(row[target] or {}).get(share, 0.0) for row in rows]
            if not any(heights):
                continue
            label = f"{target}: {share}"
            ax.bar(xs, heights, width, bottom=bottoms, color=COLORS[target], alpha=alpha, label=label)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        for x, total in zip(xs, bottoms, strict=True):
            ax.text(x, total, f"{total:.0f}", ha="center", va="bottom", fontsize=6)
    ax.set_xticks(list(range(len(rows))), [row["short"] for row in rows], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("host CPU per save (µs)")
    ax.set_title("total host CPU per save")
    ax.legend(fontsize=6)


DRAW = {"latency": _latency, "throughput": _throughput, "sizes": _sizes, "host_cpu": _host_cpu}
