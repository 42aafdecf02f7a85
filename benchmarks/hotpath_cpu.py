"""Daemon CPU per save, by stage and by path: compiled against pure Python, with the floor beside them.

docs/benchmarks.md's "What bounds each figure" and "Compiled or pure Python" tables. Two kinds
of rows, each run compiled and as pure Python (DRAWSTATE_PURE_PYTHON=1):

- Through a socket: the daemon's utime and stime from /proc around `--saves` sequential ~1 KB
  saves from one Client (one in flight), against its own redis-server, after a warm-up. Each
  variant is the real daemon with one stage taken out, or a bare uvloop echo of the same frames
  (the floor: read, cut, decode, encode, write; no dispatch, no checks, no Redis):

    shipped    the daemon as installed
    no-rules   without the DrawState rules check of the saved state
    no-redis   checked and encoded, answered at once (no EVALSHA: the reply is a stub's)
    neither    both taken out: frame cut, decode, dispatch, reply
    echo       a bare uvloop server answering each save frame with a save reply

- In process: the daemon's own code alone, process CPU per save with no socket and no Redis
  process (frames fed to a Connection, a RespConnection on a Redis that answers at the next loop
  turn; decode, checks, EVALSHA packing, reply matching and the reply frame all real), for the
  ~1 KB state and for 10, 100 and 1000 draws with prizes (the `sizes` streams). Free of the
  scheduling noise of the socket rows, it shows what compiling changes.

Rows run in rounds (every row once per round, `--repeat` rounds), so drift on a shared machine
hits them alike; each figure is the median of its rounds.

    python -m benchmarks.hotpath_cpu                      # ~4 min on 2 cores
    python -m benchmarks.hotpath_cpu --saves 2000 --repeat 1 --variants shipped --no-in-process
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from benchmarks.env import start_daemon, start_redis, stop
from benchmarks.workloads import DEFAULT_DRAWS, SaveStream, json_bytes
from drawstate import Client
from drawstate.hotpath import PURE_PYTHON_ENV
from drawstate.protocol import encode_frame

VARIANTS = ("shipped", "no-rules", "no-redis", "neither", "echo")
PATHS = ("compiled", "pure")
DEFAULT_SAVES = 10_000
WARMUP_SAVES = 1_000
DEFAULT_REPEAT = 3
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_HEADER = struct.Struct(">I")


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of `pid` in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[11]) / _TICKS_PER_S, int(fields[12]) / _TICKS_PER_S


# --- inside the measured process -------------------------------------------------------


def _patch(variant: str) -> None:
    """Take the variant's stage out of the daemon (module attributes: compiled code sees them too)."""
    from drawstated.ops import accepted
    from drawstated.storage.store import Store

    if variant in ("no-rules", "neither"):
        # The save's rules, full (check_state) or by what it appends (check_appended): all pass.
        accepted.check_state = lambda state, limits: None  # type: ignore[assignment]
        accepted.check_appended = lambda state, recorded, limits: True  # type: ignore[assignment]
    if variant in ("no-redis", "neither"):

        def start_save(self: Store, request: Any, deadline: float) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_result([b"ok", 1])
            return future

        Store.start_save = start_save  # type: ignore[method-assign]


class _Echo(asyncio.Protocol):
    """The floor: cut each frame, decode it, answer as a save would; nothing else."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + length:
                return
            request = msgpack.unpackb(bytes(self.buffer[_HEADER.size : _HEADER.size + length]))
            del self.buffer[: _HEADER.size + length]
            reply = {"id": request["id"], "ok": True}
            if request.get("op") == "save":
                reply.update(version=1, ttl_s=3600)
            elif request.get("op") == "ping":
                reply.update(redis="up", version="echo")
            body = msgpack.packb(reply)
            assert self.transport is not None
            self.transport.write(_HEADER.pack(len(body)) + body)


async def _echo(socket_path: str) -> None:
    server = await asyncio.get_running_loop().create_unix_server(_Echo, socket_path)
    async with server:
        await server.serve_forever()


def serve(variant: str, args: list[str]) -> None:
    """Run one variant in this process: the patched daemon (`drawstate serve ARGS`) or the echo."""
    if variant == "echo":
        import uvloop

        uvloop.run(_echo(args[args.index("--socket") + 1]))
        return
    from drawstated.cli import main

    _patch(variant)
    main(["serve", *args], prog_name="benchmarks.hotpath_cpu")


# --- in process: the per-request Python work alone --------------------------------------


class _InstantRedis(asyncio.Transport):
    """Under the daemon's RespConnection: each write is answered at the next loop turn with save.lua's
    "ok, version 1" (one save in flight, so one command per write)."""

    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._loop.call_soon(self._protocol.data_received, b"*2\r\n$2\r\nok\r\n:1\r\n")

    def is_closing(self) -> bool:
        return False


class _ClientSide(asyncio.Transport):
    """Under the daemon's Connection: takes its reply frames, and says when one came."""

    def __init__(self) -> None:
        super().__init__()
        self.replied: asyncio.Future[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert self.replied is not None
        self.replied.set_result(bytes(data))

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False


async def _in_process(saves: int, draws: int, prizes: bool) -> dict[str, Any]:
    """CPU per save of the daemon's own code: a Connection fed frames, a RespConnection on an instant
    Redis, everything between real (decode, checks, EVALSHA packing, reply matching, reply frame)."""
    from drawstated.config import Config  # the daemon's modules, after the env is set
    from drawstated.deferred import DeferredCleanup
    from drawstated.ops import OpTable
    from drawstated.ops.context import OpContext
    from drawstated.redis import pipeline
    from drawstated.redis.resp import RespConnection
    from drawstated.redis.topology import connect_backend
    from drawstated.server.connection import Connection
    from drawstated.server.state import ServerState
    from drawstated.stats import Stats
    from drawstated.storage.store import Store
    from drawstated.storage.stream import OutcomeStream, Publisher

    directory = Path(tempfile.mkdtemp(prefix="dsh-", dir="/tmp"))
    try:
        config = Config(socket_path=directory / "d.sock", data_dir=directory, redis_url="redis://127.0.0.1:1")
        redis = RespConnection(stall_timeout_s=60.0)
        redis.connection_made(_InstantRedis(redis))

        async def connect(endpoint: Any, **timeouts: float) -> RespConnection:
            return redis

        pipeline.connect = connect  # type: ignore[assignment]  # the one Redis connection, instant
        stats = Stats()
        store = Store.connect(connect_backend(config, config.redis_url, on_batch=stats.count_batch), config)
        stream = OutcomeStream(store.commands, config.prefix)
        publisher = Publisher(store, stream)
        cleanup = DeferredCleanup(directory / "journal", store, stream, publisher, config.cleanup_retry_s)
        ops = OpTable.build(OpContext(config, store, stream, publisher, cleanup, stats))
        connection = Connection(ServerState(config, ops, stats))
        client = _ClientSide()
        connection.connection_made(client)
        stream_ = SaveStream("bench-inproc", draws=draws, prizes=prizes)
        frames = [
            encode_frame({"id": n, "op": "save", "deadline_ms": 2000, "state": stream_.next().to_dict()})
            for n in range(WARMUP_SAVES + saves)
        ]  # made before the clock starts: only the daemon's side is timed
        loop = asyncio.get_running_loop()

        async def save(request_id: int) -> bytes:
            client.replied = loop.create_future()
            connection.data_received(frames[request_id])
            return await client.replied

        for request_id in range(WARMUP_SAVES):
            await save(request_id)
        started = time.process_time()
        for request_id in range(saves):
            reply = await save(WARMUP_SAVES + request_id)
        cpu_us = (time.process_time() - started) / saves * 1e6
        assert msgpack.unpackb(reply[_HEADER.size :])["ok"], reply
        from drawstate import hot_path

        return {"cpu_us": cpu_us, "hot_path": hot_path()}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


#: The in-process rows' states: (draws, prizes). The first is the socket rows' ~1 KB state.
IN_PROCESS_STATES = ((100, False), (10, True), (100, True), (1000, True))


def in_process(path: str, saves: int, draws: int, prizes: bool) -> dict[str, Any]:
    """One in-process run in a fresh interpreter (compiled or pure is chosen at import)."""
    env = {**os.environ, PURE_PYTHON_ENV: "1" if path == "pure" else "0"}
    args = [str(saves), str(draws), "1" if prizes else ""]
    command = [sys.executable, "-m", "benchmarks.hotpath_cpu", "--in-process-child", *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return dict(json.loads(result.stdout), path=path, draws=draws, prizes=prizes)


# --- the harness -----------------------------------------------------------------------


def measure(variant: str, path: str, saves: int) -> dict[str, Any]:
    """One run: its own Redis and daemon, `saves` sequential saves after a warm-up."""
    directory = Path(tempfile.mkdtemp(prefix="dsh-", dir="/tmp"))
    redis_proc = daemon_proc = None
    try:
        redis_proc, url = start_redis(directory, aof=False)
        env = {PURE_PYTHON_ENV: "1" if path == "pure" else "0"}
        command = [sys.executable, "-m", "benchmarks.hotpath_cpu", "--serve", variant, "--"]
        daemon_proc, sock = start_daemon(directory, ["--redis-url", url], command=command, extra_env=env)
        stream = SaveStream("bench-stages", draws=100)
        with Client(sock, timeout=10) as client:
            hot_path = None if variant == "echo" else client.stats().hot_path
            for _ in range(WARMUP_SAVES):
                client.save(stream.next())
            states = [stream.next().copy() for _ in range(saves)]
            user0, sys0 = cpu_times(daemon_proc.pid)
            rtts = []
            for state in states:
                sent = time.perf_counter()
                client.save(state)
                rtts.append(time.perf_counter() - sent)
            user1, sys1 = cpu_times(daemon_proc.pid)
        return {
            "variant": variant,
            "path": path,
            "hot_path": hot_path,
            "saves": saves,
            "state_bytes": json_bytes(states[-1]),
            "user_us": (user1 - user0) / saves * 1e6,
            "sys_us": (sys1 - sys0) / saves * 1e6,
            "rtt_p50_us": statistics.median(rtts) * 1e6,
        }
    finally:
        stop(daemon_proc)
        stop(redis_proc)
        shutil.rmtree(directory, ignore_errors=True)


def _median_of(runs: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    row = dict(runs[0])
    for key in keys:
        row[key] = statistics.median(run[key] for run in runs)
        row[key + "_runs"] = [round(run[key], 1) for run in runs]
    return row


def run(
    variants: list[str], paths: list[str], saves: int, repeat: int, *, in_process_rows: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every row once per round, rounds repeated: drift hits every row alike. (socket, in-process)"""
    cells = [(variant, path) for variant in variants for path in (paths if variant != "echo" else ["-"])]
    states = IN_PROCESS_STATES if in_process_rows else ()
    runs: dict[Any, list[dict[str, Any]]] = {cell: [] for cell in cells}
    local: dict[Any, list[dict[str, Any]]] = {(state, path): [] for state in states for path in paths}
    for round_ in range(repeat):
        for variant, path in cells:
            result = measure(variant, path, saves)
            runs[variant, path].append(result)
            print(
                f"round {round_ + 1}/{repeat} {variant:9} {path:8} user {result['user_us']:6.1f} µs  "
                f"sys {result['sys_us']:5.1f} µs  round trip p50 {result['rtt_p50_us']:6.1f} µs  "
                f"({result['hot_path']})",
                file=sys.stderr,
                flush=True,
            )
        for (draws, prizes), path in local:
            count = saves if draws <= DEFAULT_DRAWS else saves * DEFAULT_DRAWS // draws
            result = in_process(path, count, draws, prizes)
            local[(draws, prizes), path].append(result)
            print(
                f"round {round_ + 1}/{repeat} in process {draws} draws{' with prizes' if prizes else ''} "
                f"{path:8} {result['cpu_us']:7.1f} µs ({result['hot_path']})",
                file=sys.stderr,
                flush=True,
            )
    socket_rows = [_median_of(runs[cell], ("user_us", "sys_us", "rtt_p50_us")) for cell in cells]
    return socket_rows, [_median_of(local[key], ("cpu_us",)) for key in local]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| daemon | path | user CPU per save µs | sys CPU per save µs | user+sys µs | round trip p50 µs |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['hot_path'] or '-'} | {row['user_us']:.1f} | {row['sys_us']:.1f} "
            f"| {row['user_us'] + row['sys_us']:.1f} | {row['rtt_p50_us']:.0f} |"
        )
    return "\n".join(lines)


def in_process_table(rows: list[dict[str, Any]]) -> str:
    """compiled beside pure for each state: CPU per save of the daemon's own code."""
    by_state: dict[tuple[int, bool], dict[str, float]] = {}
    for row in rows:
        by_state.setdefault((row["draws"], row["prizes"]), {})[row["path"]] = row["cpu_us"]
    lines = ["| state | compiled µs | pure µs | compiled/pure |", "|---|---|---|---|"]
    for (draws, prizes), cpu in by_state.items():
        name = f"{draws} draws" + (" with prizes" if prizes else " (~1 KB)")
        if {"compiled", "pure"} <= cpu.keys():
            ratio = f"{cpu['compiled'] / cpu['pure']:.2f}"
            lines.append(f"| {name} | {cpu['compiled']:.1f} | {cpu['pure']:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        serve(argv[1], argv[3:])
        return 0
    if argv[:1] == ["--in-process-child"]:
        import uvloop

        print(json.dumps(uvloop.run(_in_process(int(argv[1]), int(argv[2]), bool(argv[3])))))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.hotpath_cpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--saves", type=int, default=DEFAULT_SAVES)
    parser.add_argument("--repeat", type=int, default=DEFAULT_REPEAT)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--no-in-process", action="store_true", help="only the socket rows")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        print(f"load average before: {loadavg.read().split()[0]}", file=sys.stderr)
    socket_rows, local_rows = run(
        args.variants.split(",") if args.variants else [],
        args.paths.split(","),
        args.saves,
        args.repeat,
        in_process_rows=not args.no_in_process,
    )
    print(table(socket_rows))
    if local_rows:
        print()
        print(in_process_table(local_rows))
    if args.out:
        args.out.write_text(json.dumps({"socket": socket_rows, "in_process": local_rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
