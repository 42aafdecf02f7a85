"""Running one Redis command or script within a deadline: the plumbing under Store and OutcomeStream.

Every call takes the request's deadline (event-loop time) and retries transient failures up to
it. A script is sent by EVALSHA; when Redis answers NOSCRIPT (it restarted, or its script cache
was flushed) every script is loaded again and the call sent once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from drawstated import errors
from drawstated.pipeline import Backend, Wait
from drawstated.retry import OutageLog, is_transient, with_retries
from drawstated.scripts import Script, load_all

log = logging.getLogger("drawstated.commands")

#: Deadline for loading the scripts when no request deadline applies (start-up).
SCRIPT_LOAD_DEADLINE_S = 5.0


class Commands:
    """Commands and scripts to one Redis topology (a Backend), each bounded by a deadline."""

    def __init__(
        self,
        pipeline: Backend,
        *,
        on_retry: Callable[[], None] | None = None,
        outage: OutageLog | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.on_retry = on_retry
        #: Logs an outage once when it starts and once when it ends, not each failed attempt.
        self.outage = outage or OutageLog()
        self.scripts: dict[str, Script] = load_all()

    async def load_scripts(self, deadline: float | None = None) -> None:
        """SCRIPT LOAD every script on every node (at start, and after Redis answers NOSCRIPT)."""
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + SCRIPT_LOAD_DEADLINE_S
        for node in range(await self.pipeline.scan_node_count()):
            for script in self.scripts.values():
                await self.run(deadline, "SCRIPT", "LOAD", script.source, node=node)

    async def run(
        self, deadline: float, *command: Any, wait: Wait | None = None, node: int | None = None
    ) -> Any:
        """One command: a plain first attempt (the hot path), tenacity only once it has failed.

        `node` sends it to one node of the topology (SCAN, SCRIPT LOAD on Cluster) instead of by key.
        """
        loop = asyncio.get_running_loop()

        def send() -> asyncio.Future[Any]:
            if node is None:
                return self.pipeline.submit(*command, wait=wait)
            return self.pipeline.submit_to(node, *command)

        future = send()
        timer = loop.call_at(deadline, expire_future, future)
        outage = self.outage
        try:
            result = await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller was cancelled, not our deadline
            raise errors.deadline() from None
        except Exception as exc:
            if not is_transient(exc):
                outage.answered()
                raise
            outage.attempt_failed(exc)
        else:
            if outage.active:
                outage.answered()
            return result
        finally:
            timer.cancel()
        if self.on_retry is not None:
            self.on_retry()
        return await with_retries(send, deadline, self.on_retry, first_failed=True, outage=outage)

    async def script(
        self,
        name: str,
        deadline: float,
        keys: Sequence[Any],
        args: Sequence[Any],
        wait: Wait | None = None,
    ) -> Any:
        """Run a script by name (its header says its KEYS and ARGV)."""
        return await self.evalsha(deadline, self.scripts[name].command(keys, args), wait)

    async def evalsha(self, deadline: float, command: tuple[Any, ...], wait: Wait | None = None) -> Any:
        """Run a script command; on NOSCRIPT load the scripts and send it once more."""
        try:
            return await self.run(deadline, *command, wait=wait)
        except ResponseError as exc:
            if not is_noscript(exc):
                raise
        log.info("redis lost its scripts (NOSCRIPT); reloading")
        await self.load_scripts(deadline)
        return await self.run(deadline, *command, wait=wait)

    async def many(self, commands: Sequence[tuple[Any, ...]], deadline: float) -> list[Any]:
        """Commands sent together in one pipeline (by key); retried together while transient."""

        async def attempt() -> list[Any]:
            return list(await asyncio.gather(*(self.pipeline.submit(*command) for command in commands)))

        return await with_retries(attempt, deadline, self.on_retry, outage=self.outage) if commands else []


def is_noscript(exc: BaseException) -> bool:
    return isinstance(exc, ResponseError) and str(exc).startswith("NOSCRIPT")


def expire_future(future: asyncio.Future[Any]) -> None:
    """Deadline timer: give up waiting (the reply, if it comes, is read and dropped)."""
    if not future.done():
        future.cancel()
