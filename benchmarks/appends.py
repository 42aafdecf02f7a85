"""What sending only the new draws saves: the same client and daemon, with appends on and off.

docs/benchmarks.md's "Saves that send only what they add". For each state size, rounds of two
runs, one with the client sending whole states as it did before appends existed (nothing
remembered, no base asked for) and one sending appends whatever the state's size (the client's
MIN_ITEMS_TO_APPEND set to 0), each against its own redis-server and daemon: `--saves`
sequential saves from one Client after a warm-up, the daemon's CPU from /proc, the client's own
process CPU, and wall time.
The rows of a round run back to back, so drift on a shared machine hits both alike.

    python -m benchmarks.appends                 # ~2 min on 2 cores
    python -m benchmarks.appends --saves 2000 --repeat 1
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.env import start_daemon, start_redis, stop
from benchmarks.hotpath_cpu import cpu_times
from benchmarks.workloads import SaveStream, json_bytes
from drawstate import Client

#: (draws, with prizes): the latency scenario's ~1 KB state, and the sizes scenario's extremes.
SIZES = ((10, True), (100, False), (40, True), (100, True), (1000, True))
MODES = ("whole", "append")
WARMUP_SAVES = 500


def measure(mode: str, draws: int, prizes: bool, saves: int) -> dict[str, float]:
    """Per save: the daemon's CPU, the client's CPU and the wall time, in µs."""
    directory = Path(tempfile.mkdtemp(prefix="dsa-", dir="/tmp"))
    redis_proc = daemon_proc = None
    try:
        redis_proc, url = start_redis(directory, aof=False)
        daemon_proc, sock = start_daemon(directory, ["--redis-url", url])
        stream = SaveStream("bench-appends", draws=draws, prizes=prizes)
        with Client(sock, timeout=10) as client:
            # The knobs of the client's memory of past saves (drawstate/appends.py), for this A/B only.
            client._bases.min_items = 0 if mode == "append" else 1 << 62
            for _ in range(WARMUP_SAVES):
                client.save(stream.next())
            user0, sys0 = cpu_times(daemon_proc.pid)
            own0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(saves):
                client.save(stream.next())
            own1, wall1 = time.process_time(), time.perf_counter()
            user1, sys1 = cpu_times(daemon_proc.pid)
        return {
            "daemon_us": (user1 - user0 + sys1 - sys0) / saves * 1e6,
            "client_us": (own1 - own0) / saves * 1e6,
            "wall_us": (wall1 - wall0) / saves * 1e6,
        }
    finally:
        stop(daemon_proc)
        stop(redis_proc)
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print("| draws | JSON bytes | sent | daemon CPU µs/save | client CPU µs/save | wall µs/save |")
    print("|---|---|---|---|---|---|")
    for draws, prizes in SIZES:
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.repeat):
            for mode in MODES:
                runs[mode].append(measure(mode, draws, prizes, args.saves))
        size = json_bytes(SaveStream("bench-appends-size", draws=draws, prizes=prizes).next())
        for mode in MODES:
            cells = [
                " / ".join(f"{run[key]:,.0f}" for run in runs[mode])
                + f" (median {statistics.median(run[key] for run in runs[mode]):,.0f})"
                for key in ("daemon_us", "client_us", "wall_us")
            ]
            print(
                f"| {draws}{' with prizes' if prizes else ''} | {size:,} | {mode} | "
                + " | ".join(cells)
                + " |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
