"""`python -m benchmarks.stages`: where a save's time goes in the daemon, stage by stage, per state size.

For states of 10, 100 and 1000 draws with prizes (the `sizes` scenario's streams), it measures:

- in this process, each stage the daemon runs for a save, as the median of many runs over the
  same frames: the frame decode with its limits hook (server/decoding.py; plain msgpack beside
  it), the whole rules check, the check a save gets when the daemon accepted the state before it
  (ops/accepted.py: the new draws' rules, the head and the digests), the canonical JSON head on
  its own, and the reply frame;
- in Redis, save.lua's own time per call (`INFO commandstats` usec_per_call) for a stream of
  saves sent as the daemon sends them (with the digest claim of the state accepted before),
  the same saves without a claim (the text compare: a miss, or another daemon's save), and a
  plain SET of the same bytes;
- the daemon process's CPU per save (utime+stime from /proc) around `--saves` sequential saves of
  each size from one client, with the client's own CPU and the wall time per save beside it.

Saves follow the benchmark's streams: an operation starts prefilled to `draws - 10` draws and ten
saves append one draw each, so nine saves in ten extend the state accepted just before.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import click
import msgpack
import redis

from benchmarks import env, measure
from benchmarks.workloads import SaveStream
from drawstate import Client, protocol
from drawstate import ops as client_ops
from drawstate.model import check_state
from drawstated.codec import encode_head
from drawstated.config import Config
from drawstated.ops.accepted import Accepted, check_save
from drawstated.redis.commands import Commands
from drawstated.server.decoding import RequestDecoder
from drawstated.storage.store import SaveRequest, Store

#: Consecutive saves whose frames are timed in process (cycled through).
FRAMES_PER_SIZE = 40
#: Timed runs of each in-process stage per size (the median is reported).
STAGE_RUNS = 400
#: Saves before the daemon's CPU is read, so its caches and Redis's are warm.
WARMUP_SAVES = 20


def _requests(draws: int, count: int) -> list[dict[str, Any]]:
    """`count` consecutive save requests of one stream, as the client sends them."""
    stream = SaveStream(f"stages:{draws}", draws, prizes=True)
    requests = []
    for i in range(count):
        request = client_ops.save(stream.next(), expect_version=None, ttl_s=None, token=None, durability=None)
        request["id"] = i + 1
        requests.append(request)
    return requests


def _previous(states: list[dict[str, Any]], limits: Any) -> list[Accepted | None]:
    """For each state, what the daemon accepted just before it for the same operation (or None)."""
    previous: list[Accepted | None] = [None]
    for before, state in itertools.pairwise(states):
        same = before["operation_id"] == state["operation_id"]
        previous.append(check_save(before, limits, None).accepted if same else None)
    return previous


def _median_us(fn: Callable[[int], object], indexes: list[int]) -> float:
    times = []
    for run in range(STAGE_RUNS):
        i = indexes[run % len(indexes)]
        start = time.perf_counter_ns()
        fn(i)
        times.append(time.perf_counter_ns() - start)
    return round(statistics.median(times) / 1000, 1)


def in_process(draws: int, config: Config) -> dict[str, float]:
    """Median µs of each in-process stage of one save of a `draws`-draw state."""
    limits = config.limits
    bodies = [msgpack.packb(request, use_bin_type=True) for request in _requests(draws, FRAMES_PER_SIZE)]
    decoder = RequestDecoder(config)
    states = [decoder.decode(body)[0]["state"] for body in bodies]
    previous = _previous(states, limits)
    every = list(range(len(states)))
    extending = [i for i in every if previous[i] is not None]
    reply = {"id": 1, "ok": True, "version": 12, "ttl_s": 3600}
    return {
        "json_bytes": float(len(encode_head(states[0], limits)) + 1),
        "decode": _median_us(lambda i: decoder.decode(bodies[i]), every),
        "decode_plain": _median_us(
            lambda i: msgpack.unpackb(bodies[i], raw=False, strict_map_key=False), every
        ),
        "check_state": _median_us(lambda i: check_state(states[i], limits), every),
        "encode_head": _median_us(lambda i: encode_head(states[i], limits), every),
        "check_save_miss": _median_us(lambda i: check_save(states[i], limits, None), every),
        "check_save_hit": _median_us(lambda i: check_save(states[i], limits, previous[i]), extending),
        "reply": _median_us(lambda i: protocol.encode_frame(reply), every),
    }


def in_redis(draws: int, saves: int, config: Config, url: str) -> dict[str, float]:
    """µs per call inside Redis: save.lua with the daemon's claim, without one, and a plain SET."""
    limits = config.limits
    store = Store(Commands(cast(Any, None)), config)
    states = [request["state"] for request in _requests(draws, saves)]
    previous = _previous(states, limits)
    out: dict[str, float] = {}
    with redis.Redis.from_url(url) as conn:
        conn.script_load(store.commands.scripts["save"].source)
        for name, claims in (("save_lua", True), ("save_lua_no_claim", False)):
            conn.flushall()
            conn.config_resetstat()
            for state, before in zip(states, previous, strict=True):
                checked = check_save(state, limits, before if claims else None)
                conn.execute_command(*store.save_command(_save_request(state, checked.head, checked)))
            out[name] = float(conn.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])
        conn.config_resetstat()
        for state in states:
            conn.set(f"stages:set:{draws}", encode_head(state, limits) + b"}")
        out["set"] = float(conn.info("commandstats")["cmdstat_set"]["usec_per_call"])
        conn.flushall()
    return out


def _save_request(state: dict[str, Any], head: bytes, checked: Any) -> SaveRequest:
    return SaveRequest(
        lock_key=state["lock_key"],
        operation_id=state["operation_id"],
        head=head,
        token=os.urandom(8).hex(),
        expect_version=None,
        completed_count=state["completed_count"],
        ttl_ms=3_600_000,
        wait=None,
        digest=checked.digest,
        expect_digest=checked.expect_digest,
        error_count=len(state.get("errors") or ()),
    )


def daemon_cpu(draws: int, saves: int, sock: str, pid: int) -> dict[str, float]:
    """Daemon and client CPU µs per save, and wall µs, around `saves` sequential saves of one stream."""
    stream = SaveStream(f"stages:cpu:{draws}", draws, prizes=True)
    payloads = [client_ops.state_map(stream.next()) for _ in range(saves + WARMUP_SAVES)]
    with Client(sock, timeout=10) as client:
        for state in payloads[:WARMUP_SAVES]:
            client.save(state)
        before, client_before = measure.cpu_seconds(pid), time.process_time()
        start = time.perf_counter()
        for state in payloads[WARMUP_SAVES:]:
            client.save(state)
        wall = time.perf_counter() - start
        after, client_after = measure.cpu_seconds(pid), time.process_time()
    assert before is not None and after is not None
    return {
        "daemon_cpu_us": round((after - before) / saves * 1e6, 1),
        "client_cpu_us": round((client_after - client_before) / saves * 1e6, 1),
        "wall_us": round(wall / saves * 1e6, 1),
    }


class _Environment:
    """A private redis-server and daemon (their defaults) for the measured saves; stopped on exit."""

    def __enter__(self) -> tuple[str, str, int]:
        self._dir = tempfile.TemporaryDirectory(prefix="dsstages-", dir="/tmp")
        directory = Path(self._dir.name)
        self.redis, url = env.start_redis(directory, aof=False)
        self.daemon, sock = env.start_daemon(directory, ["--redis-url", url])
        return url, sock, self.daemon.pid

    def __exit__(self, *exc_info: object) -> None:
        for proc in (self.daemon, self.redis):
            proc.terminate()
            proc.wait(10)
        self._dir.cleanup()


@click.command()
@click.option("--sizes", default="10,100,1000", show_default=True, help="Draws per state.")
@click.option("--saves", default=2000, show_default=True, help="Saves per size for Redis and daemon CPU.")
def main(sizes: str, saves: int) -> None:
    """Print one markdown table: a row per size, a column per stage (µs)."""
    draws_list = [int(part) for part in sizes.split(",")]
    config = Config()
    print(f"load average before: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    rows = {draws: in_process(draws, config) for draws in draws_list}
    with _Environment() as (url, sock, pid):
        for draws in draws_list:
            rows[draws] |= in_redis(draws, saves, config, url)
            rows[draws] |= daemon_cpu(draws, saves, sock, pid)
    print(f"load average after: {os.getloadavg()[0]:.2f}", file=sys.stderr)
    columns = list(rows[draws_list[0]])
    print("| draws | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for draws, row in rows.items():
        print(f"| {draws} | " + " | ".join(f"{row[column]:,.1f}" for column in columns) + " |")


if __name__ == "__main__":
    main()
