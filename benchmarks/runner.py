"""One benchmark run from its Settings: environment up, scenarios in order, results written, all stopped.

`run(settings)` is what the CLI calls; it works the same from Python. Every
process it starts (Redis, the daemon, the load workers) is stopped in a
finally block, on an error and on Ctrl-C alike.
"""

from __future__ import annotations

import datetime
import os
import platform
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks import clients, latency, mix, report, sizes, throughput
from benchmarks.common import Run
from benchmarks.env import Environment, environment
from benchmarks.settings import SCENARIOS, Settings
from drawstate import Client, DrawStateError
from drawstated.config import redact_url

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCENARIO_RUNNERS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "latency": latency.run,
    "throughput": throughput.run,
    "sizes": sizes.run,
    "mix": mix.run,
    "clients": clients.run,
}


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def _redact_arg(arg: str) -> str:
    """A command-line argument with the password of any Redis URL in it replaced by ***."""
    if "://" not in arg:
        return arg
    flag, eq, url = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
    return f"{flag}{eq}{redact_url(url)}"


def _meta(
    settings: Settings, env: Environment, started: datetime.datetime, load_before: float
) -> dict[str, Any]:
    return {
        "started_at": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "command": shlex.join(["python", "-m", "benchmarks", *map(_redact_arg, sys.argv[1:])]),
        "quick": settings.quick,
        "scenarios": list(settings.scenarios),
        "settings": {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in vars(settings).items()
            if key not in ("out", "scenarios", "redis_url")
        }
        | {"redis_url": redact_url(settings.redis_url)},
        "environment": (
            ("own Redis Cluster and daemon" if env.cluster else "own redis-server and daemon")
            if env.owned
            else "given"
        ),
        "topology": env.topology,
        "redis": _redis_meta(env),
        "redis_version": env.redis_version,
        "redis_aof": settings.aof,
        "redis_py": redis.__version__,
        "hiredis": bool(getattr(redis.utils, "HIREDIS_AVAILABLE", False)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        # Other load on the machine skews every number: the 1-minute load average before the run.
        "loadavg_1m_before": round(load_before, 2),
        "commit": _commit(),
        # compiled or pure: what the daemon's stats say it runs (docs/operations.md).
        "daemon_hot_path": _daemon_hot_path(env),
    }


def _daemon_hot_path(env: Environment) -> str | None:
    try:
        with Client(env.socket_path, timeout=5) as client:
            return client.stats().hot_path
    except DrawStateError:  # a daemon that stopped answering: the run says so elsewhere
        return None


def _redis_meta(env: Environment) -> dict[str, Any]:
    """What Redis ran and what its CPU and RSS figures cover."""
    if env.cluster is None:
        where = "unix socket" if env.redis_url.startswith("unix://") else "TCP"
        return {"nodes": 1, "transport": where, "cpu_measured": "the redis-server process"}
    return {
        **env.cluster.summary(),
        "seeds": list(env.cluster_seeds),
        "cpu_measured": "redis: the master processes, summed; replicas: the replica processes, summed",
    }


def output_dir(settings: Settings, started: datetime.datetime) -> Path:
    out = settings.out or RESULTS_DIR / started.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run(settings: Settings) -> Path:
    """Run the selected scenarios; return the directory holding results.json, .md and .png."""
    started = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    out = output_dir(settings, started)
    tag = f"bench-{secrets.token_hex(3)}"
    with environment(
        tag=tag,
        redis_url=settings.redis_url,
        socket_path=settings.socket_path,
        daemon_pid=settings.daemon_pid,
        redis_pid=settings.redis_pid,
        prefix=settings.prefix,
        aof=settings.aof,
        topology=settings.topology,
    ) as env:
        context = Run(settings, env, tag, began)
        where = (
            f"cluster of {len(env.cluster.initial_masters)} masters + replicas, seeds "
            f"{','.join(env.cluster_seeds)}"
            if env.cluster is not None
            else f"at {redact_url(env.redis_url)}"
        )
        context.progress(
            f"redis {env.redis_version} {where}, daemon at {env.socket_path} "
            f"(pid {env.daemon_pid or 'unknown'}); results to {out}"
        )
        scenarios: dict[str, Any] = {}
        for name in (s for s in SCENARIOS if s in settings.scenarios):
            context.progress(f"scenario {name}")
            scenarios[name] = SCENARIO_RUNNERS[name](context)
        results = {"meta": _meta(settings, env, started, load_before), "scenarios": scenarios}
        if env.cluster is not None and results["meta"]["redis"]["masters_changed"]:
            context.progress("warning: a cluster master changed role during the run (a failover)")
    results["meta"]["wall_s"] = round(time.monotonic() - began, 1)
    results["meta"]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    report.write_json(out / "results.json", results)
    report.write_markdown(out / "results.md", results)
    written = ["results.json", "results.md"]
    if settings.plot:
        from benchmarks.plot import write_png  # matplotlib only when plotting

        write_png(out / "results.png", results)
        written.append("results.png")
    print(f"[{time.monotonic() - began:6.1f}s] wrote {', '.join(written)} to {out}", file=sys.stderr)
    return out
