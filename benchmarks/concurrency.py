"""What the `clients` scenario's worker runs: saves from many threads or asyncio tasks inside ONE process.

The other scenarios put every client in its own process. This module measures
what a game server does with one process: 16 threads sharing one pooled
`drawstate.Client`, 16 threads with a Client each, or one event loop (asyncio's
own or uvloop) with one `AsyncClient` and N concurrent tasks. The direct
counterparts do the same with redis-py: threads sharing one `redis.Redis` (its
connection pool), or tasks sharing one `redis.asyncio.Redis`.

A window is one command with two replies. The worker first builds the clients
and warms every thread or task up (connections opened, pools filled), then
picks a start time `GO_MARGIN_S` ahead and replies with the window; the parent
reads the daemon's and Redis's CPU at that start. The threads or tasks then save
back to back until the window ends (closed loop, as load.py's `closed`), and
the second reply carries their latencies and the process's CPU time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio

from benchmarks.load import COUNTED_ERRORS, WARMUP_SAVES, Recorder, sleep_until
from benchmarks.measure import merge
from benchmarks.pool import Endpoints, WorkerContext
from benchmarks.targets import CALL_TIMEOUT_S, TTL_S, Direct, direct_client
from benchmarks.workloads import SaveStream
from drawstate import Client, DrawState
from drawstate.aio import AsyncClient
from drawstated.keys import state_key

#: Time from the end of the warm-up to the window's start: the parent must read the CPU first.
GO_MARGIN_S = 0.05
#: How long every thread may take to connect and warm up before the window is given up.
WARMUP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Shape:
    """One way a process drives saves: which target, through threads or tasks, how many, on what."""

    key: str
    target: str  # "sidecar" or "direct"
    mode: str  # "threads" or "asyncio"
    workers: int  # threads, or concurrent tasks
    #: threads: how many client objects the threads share (1: one shared; `workers`: one each).
    clients: int = 1
    #: sidecar threads: the Client's pool_size (None: the Client's default).
    pool_size: int | None = None
    #: asyncio: "asyncio" (the default loop) or "uvloop".
    loop: str = "asyncio"
    #: The key of the direct shape this one's ops/s is compared with (sidecar shapes only).
    baseline: str | None = None


# --- threads -------------------------------------------------------------------------


Saver = tuple[Callable[[DrawState], Any], Callable[[], None]]


def _thread_saver(shape: Shape, endpoints: Endpoints) -> Saver:
    """One blocking client of the shape's target: its save function and its close."""
    if shape.target == "sidecar":
        pool = {} if shape.pool_size is None else {"pool_size": shape.pool_size}
        client = Client(endpoints.socket_path, timeout=CALL_TIMEOUT_S, **pool)
        return client.save, client.close
    direct = Direct(direct_client(endpoints.redis_url, endpoints.cluster_seeds), endpoints.prefix)
    return direct.save, direct.close


def _threads(shape: Shape, endpoints: Endpoints, streams: list[SaveStream], duration: float) -> Iterator[Any]:
    """Yield the window once every thread is warm, then the threads' recorders once it is over."""
    savers = [_thread_saver(shape, endpoints) for _ in range(shape.clients)]
    window: dict[str, float] = {}
    go = threading.Event()
    warm = threading.Barrier(shape.workers + 1, timeout=WARMUP_TIMEOUT_S)
    recorders: list[Recorder | None] = [None] * shape.workers
    failures: list[BaseException] = []

    def body(index: int) -> None:
        save = savers[index % len(savers)][0]
        stream = streams[index]
        try:
            for _ in range(WARMUP_SAVES):
                save(stream.next())
            warm.wait()
            go.wait()
            record = Recorder(window["end_at"])
            sleep_until(window["start_at"])
            while record("save", save, stream.next()):
                pass
            recorders[index] = record
        except BaseException as exc:  # reported by the worker's main thread
            failures.append(exc)
            warm.abort()

    threads = [threading.Thread(target=body, args=(i,), name=f"saver-{i}") for i in range(shape.workers)]
    try:
        for thread in threads:
            thread.start()
        try:
            warm.wait()
        except threading.BrokenBarrierError:
            raise failures[0] if failures else TimeoutError("threads did not warm up") from None
        start_at = time.monotonic() + GO_MARGIN_S
        window.update(start_at=start_at, end_at=start_at + duration)
        go.set()
        yield window
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        yield recorders
    finally:
        go.set()  # never leave a thread waiting (a failure, or the parent giving up)
        window.setdefault("start_at", 0.0)
        window.setdefault("end_at", 0.0)
        for thread in threads:
            if thread.is_alive():
                thread.join(WARMUP_TIMEOUT_S)
        for _, close in savers:
            close()


# --- asyncio -------------------------------------------------------------------------


class AsyncRecorder(Recorder):
    """load.Recorder for coroutines: latencies of the saves that complete inside the window."""

    async def arun(self, name: str, operation: Callable[[Any], Awaitable[Any]], arg: Any) -> bool:
        if time.monotonic() >= self.end_at:
            return False
        began = time.monotonic()
        try:
            await operation(arg)
        except COUNTED_ERRORS:
            self.errors += 1
            return True
        self.finished(name, began)
        return True


class _AsyncDirect:
    """Direct's save through redis.asyncio (RedisCluster on a cluster): the same SET EX of the same JSON."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.prefix = endpoints.prefix
        self.redis: redis.asyncio.Redis | redis.asyncio.RedisCluster
        if endpoints.cluster_seeds:
            nodes = [redis.asyncio.cluster.ClusterNode(*_host_port(s)) for s in endpoints.cluster_seeds]
            self.redis = redis.asyncio.RedisCluster(startup_nodes=nodes, socket_timeout=CALL_TIMEOUT_S)
        else:
            self.redis = redis.asyncio.Redis.from_url(endpoints.redis_url, socket_timeout=CALL_TIMEOUT_S)

    async def connect(self) -> None:
        """Learn a cluster's slots before the first concurrent command.

        redis-py's asyncio RedisCluster, first used by many tasks at once, initialises from each
        of them and breaks a connection mid-command ('NoneType' object has no attribute
        'writelines'); initialised once beforehand, it does not.
        """
        if isinstance(self.redis, redis.asyncio.RedisCluster):
            await self.redis.initialize()

    async def save(self, state: DrawState) -> None:
        key = state_key(self.prefix, state.lock_key, state.operation_id)
        await self.redis.set(key, json.dumps(state.to_dict()), ex=TTL_S)

    async def close(self) -> None:
        await self.redis.aclose()


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "uvloop":
        import uvloop  # the daemon's dependency, so there whenever the daemon is

        return uvloop.new_event_loop
    if loop == "asyncio":
        return None
    raise ValueError(f"unknown event loop {loop!r}")


def _tasks(shape: Shape, endpoints: Endpoints, streams: list[SaveStream], duration: float) -> Iterator[Any]:
    """The same two yields as _threads, from one event loop: the loop stops between them."""
    with asyncio.Runner(loop_factory=_loop_factory(shape.loop)) as runner:
        client: AsyncClient | _AsyncDirect = (
            AsyncClient(endpoints.socket_path, timeout=CALL_TIMEOUT_S)
            if shape.target == "sidecar"
            else _AsyncDirect(endpoints)
        )

        async def warm_up(stream: SaveStream) -> None:
            for _ in range(WARMUP_SAVES):
                await client.save(stream.next())

        async def saves(stream: SaveStream, start_at: float, end_at: float) -> AsyncRecorder:
            record = AsyncRecorder(end_at)
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            while await record.arun("save", client.save, stream.next()):
                pass
            return record

        async def measure(start_at: float, end_at: float) -> list[AsyncRecorder]:
            return list(await asyncio.gather(*(saves(s, start_at, end_at) for s in streams)))

        async def warm_all() -> None:
            async with asyncio.timeout(WARMUP_TIMEOUT_S):
                if isinstance(client, _AsyncDirect):
                    await client.connect()
                await asyncio.gather(*(warm_up(stream) for stream in streams))

        try:
            runner.run(warm_all())
            start_at = time.monotonic() + GO_MARGIN_S
            end_at = start_at + duration
            yield {"start_at": start_at, "end_at": end_at}
            yield runner.run(measure(start_at, end_at))
        finally:
            runner.run(client.close())


# --- the handler ---------------------------------------------------------------------


def window(context: WorkerContext, *, shape: Shape, duration: float, tag: str) -> Iterator[dict[str, Any]]:
    """Reply with the window once warm, then with the saves' latencies, errors and the process's CPU."""
    streams = [
        SaveStream(f"{tag}:{shape.key}:{i}", seed=zlib.crc32(f"{tag}:{shape.key}:{i}".encode()))
        for i in range(shape.workers)
    ]
    run = _threads if shape.mode == "threads" else _tasks
    phases = run(shape, context.endpoints, streams, duration)
    bounds = next(phases)
    yield {"start_at": bounds["start_at"], "end_at": bounds["end_at"]}
    sleep_until(bounds["start_at"])
    cpu_before = time.process_time()
    recorders = next(phases)
    cpu = time.process_time() - cpu_before
    phases.close()
    yield {
        "ops": {"save": merge(r.ops.get("save", ()) for r in recorders)},
        "errors": sum(r.errors for r in recorders),
        "elapsed_s": min(time.monotonic(), bounds["end_at"]) - bounds["start_at"],
        "client_cpu_s": cpu,
    }


HANDLERS = {"window": window}
