"""Soak: a long, paced multi-draw mix through one daemon, watching its memory and descriptors.

`python -m benchmarks.soak --duration 600 --rate 2000` starts its own Redis and
daemon, runs game-like flows (start, a save per draw, complete, or rollback one
time in ten) from several processes at the target rate, and samples the
daemon's RSS and open descriptors. Flat lines are the pass mark: a leak shows
as growth between the first and last minute. Writes soak.json and soak.md.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from drawstate import Client, DrawStateError, MultiDraw, Prize
from drawstated.server.embedded import find_redis_server

SAMPLE_EVERY_S = 5.0
#: Load runs this long (at most a tenth of the soak) before the first sample is the baseline.
WARMUP_S = 10.0
PRIZES = [
    Prize("gold", "Gold", 0.1, 500),
    Prize("silver", "Silver", 0.3, 100),
    Prize("bronze", "Bronze", 0.6, 20),
]


def _worker(socket_path: str, index: int, rate: float, stop_at: float, out: Any) -> None:
    """Paced flows: every op has an intended time; a late op runs at once (the lateness is not hidden)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(index)
    interval, next_at = 1.0 / rate, time.monotonic()
    ops = errors = flows = 0

    def pace() -> None:
        nonlocal next_at, ops
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
        ops += 1

    with Client(socket_path, timeout=2.0) as client:
        while time.monotonic() < stop_at:
            lock_key = f"soak:{index}:{rng.randrange(1000)}"
            try:
                pace()
                draw = MultiDraw.start(
                    client, lock_key, 10, metadata={"user_id": str(index), "price": "1600"}
                )
                for _ in range(10):
                    pace()
                    draw.record(rng.choices(PRIZES, weights=[p.probability for p in PRIZES])[0])
                pace()
                if rng.random() < 0.1:
                    draw.rollback("soak")
                else:
                    draw.complete()
                flows += 1
            except DrawStateError:
                errors += 1
    out.put({"ops": ops, "errors": errors, "flows": flows})


def _sample(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


@click.command()
@click.option("--duration", type=float, default=600.0, show_default=True, help="Seconds of load.")
@click.option("--rate", type=float, default=2000.0, show_default=True, help="Target ops/s in all.")
@click.option("--processes", type=int, default=8, show_default=True, help="Load processes.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None)
def main(duration: float, rate: float, processes: int, out: Path | None) -> None:
    """Run the soak and write soak.json and soak.md."""
    out = out or Path("benchmarks/results") / time.strftime("soak-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dsoak-", dir="/tmp"))
    redis_sock, sock = work / "r.sock", work / "d.sock"
    redis = subprocess.Popen(
        [
            find_redis_server(),
            "--port",
            "0",
            "--unixsocket",
            str(redis_sock),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    daemon = None
    try:
        while not redis_sock.exists():
            time.sleep(0.02)
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "drawstated",
                "--socket",
                str(sock),
                "--redis-url",
                f"unix://{redis_sock}",
                "--data-dir",
                str(work / "data"),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
        )
        while not sock.exists():
            time.sleep(0.02)
        results = _run(sock, daemon.pid, duration, rate, processes)
    finally:
        for proc in (daemon, redis):
            if proc is not None:
                proc.terminate()
                proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)
    (out / "soak.json").write_text(json.dumps(results, indent=2))
    (out / "soak.md").write_text(_markdown(results))
    click.echo(_markdown(results))


def _run(sock: Path, pid: int, duration: float, rate: float, processes: int) -> dict[str, Any]:
    queue: Any = mp.get_context("fork").Queue()
    stop_at = time.monotonic() + duration
    workers = [
        mp.get_context("fork").Process(target=_worker, args=(str(sock), i, rate / processes, stop_at, queue))
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    samples, started = [], time.monotonic()
    time.sleep(min(WARMUP_S, duration / 10))  # connections open, caches fill: then the baseline
    while time.monotonic() < stop_at:
        rss, fds = _sample(pid)
        samples.append({"t_s": round(time.monotonic() - started, 1), "rss_mb": round(rss, 1), "fds": fds})
        click.echo(f"soak {samples[-1]['t_s']:>6.0f} s  daemon RSS {rss:6.1f} MB  fds {fds}", err=True)
        time.sleep(min(SAMPLE_EVERY_S, max(0.0, stop_at - time.monotonic())))
    totals = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(30)
    ops = sum(t["ops"] for t in totals)
    return {
        "duration_s": duration,
        "target_rate": rate,
        "processes": processes,
        "ops": ops,
        "achieved_rate": round(ops / duration, 1),
        "flows": sum(t["flows"] for t in totals),
        "errors": sum(t["errors"] for t in totals),
        "samples": samples,
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_end_mb": samples[-1]["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "fds_start": samples[0]["fds"],
        "fds_end": samples[-1]["fds"],
        "fds_max": max(s["fds"] for s in samples),
    }


def _markdown(r: dict[str, Any]) -> str:
    title = (
        f"## soak — {r['duration_s']:.0f} s at a target {r['target_rate']:.0f} ops/s, "
        f"{r['processes']} processes"
    )
    header = (
        "| ops | ops/s | multi-draws | errors | daemon RSS start / end / max MB | fds start / end / max |"
    )
    row = (
        f"| {r['ops']} | {r['achieved_rate']} | {r['flows']} | {r['errors']} | "
        f"{r['rss_start_mb']} / {r['rss_end_mb']} / {r['rss_max_mb']} | "
        f"{r['fds_start']} / {r['fds_end']} / {r['fds_max']} |"
    )
    return f"{title}\n\n{header}\n|---|---|---|---|---|---|\n{row}\n"


if __name__ == "__main__":
    main()
