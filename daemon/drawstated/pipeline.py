"""Auto-pipelining: commands submitted in the same loop tick go to Redis as one pipeline.

A lone command is flushed on the next tick, with no batching delay. At most
`max_batches` pipelines are in flight (one per pooled connection); while they
are busy new commands gather into the next batch, so batches grow exactly when
Redis is the bottleneck. A NOSCRIPT reply reloads the scripts and re-sends
only the commands that got it.

A command may ask for replica acknowledgement (`wait=(replicas, timeout_ms)`):
the batch then ends with one WAIT on the same connection, which covers every
write before it, and such a command's result is `(reply, replicas_acked)`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

log = logging.getLogger("drawstated.pipeline")

Command = tuple[Any, ...]
Wait = tuple[int, int]
_Item = tuple[Command, "asyncio.Future[Any]", Wait | None]


class AutoPipeline:
    """Batches commands per loop tick over a small pool of Redis connections."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_batches: int,
        load_scripts: Callable[[Redis], Any],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._redis = redis
        self._max_batches = max_batches
        self._load_scripts = load_scripts
        self._on_batch = on_batch
        self._queue: list[_Item] = []
        self._flush_scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, *command: Any, wait: Wait | None = None) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply, or the reply's error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future, wait))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight >= self._max_batches:
            return  # a finishing batch flushes again
        # Requests that gave up (deadline) while queued are not sent at all.
        batch = [item for item in self._queue if not item[1].done()]
        self._queue = []
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Item]) -> None:
        waits = [wait for _, _, wait in batch if wait is not None]
        # One WAIT for the batch: the most replicas anyone asked for, the longest timeout.
        wait = (max(w[0] for w in waits), max(w[1] for w in waits)) if waits else None
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            results, acked = await self._execute([command for command, _, _ in batch], wait)
        except Exception as exc:  # the whole batch failed (connection lost, timeout)
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future, item_wait), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result if item_wait is None else (result, acked))
        finally:
            self._in_flight -= 1
            if self._queue and not self._flush_scheduled:
                self._flush()

    async def _execute(self, commands: Sequence[Command], wait: Wait | None) -> tuple[list[Any], int | None]:
        results, acked = await self._send(commands, wait)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            # Redis restarted or flushed its script cache: load once, re-send those only.
            log.info("redis lost its scripts (NOSCRIPT); reloading")
            await self._load_scripts(self._redis)
            retried, acked_again = await self._send([commands[i] for i in missing], wait)
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
            if acked is not None and acked_again is not None:
                acked = min(acked, acked_again)
        return results, acked

    async def _send(self, commands: Sequence[Command], wait: Wait | None) -> tuple[list[Any], int | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            if wait is not None:
                pipe.execute_command("WAIT", *wait)
            results = list(await pipe.execute(raise_on_error=False))
        if wait is None:
            return results, None
        acked = results.pop()
        if isinstance(acked, Exception):
            raise acked
        return results, int(acked)

    async def close(self) -> None:
        """Wait for batches already sent; queued commands fail as the daemon is stopping."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, future, _ in self._queue:
            if not future.done():
                future.cancel()
        self._queue = []
