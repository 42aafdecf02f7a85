"""Running one Redis command or script within a deadline: the plumbing under Store and OutcomeStream.

Every call takes the request's deadline (event-loop time). Its first attempt is sent plainly (the
hot path); once one fails with a transient error, the daemon's RetryPolicy backs off and tries
again up to the deadline. A script is sent by EVALSHA; when Redis answers NOSCRIPT (it restarted,
or its script cache was flushed) every script is loaded again and the call sent once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from drawstated import errors
from drawstated.redis.errors import NoScriptError
from drawstated.redis.pipeline import Backend, Wait
from drawstated.redis.retry import RetryPolicy, is_transient
from drawstated.redis.scripts import Script, load_all

log = logging.getLogger("drawstated.redis.commands")

#: Deadline for loading the scripts when no request deadline applies (start-up).
SCRIPT_LOAD_DEADLINE_S = 5.0


class Commands:
    """Commands and scripts to one Redis topology (a Backend), each bounded by a deadline."""

    def __init__(self, backend: Backend, retry: RetryPolicy | None = None) -> None:
        self.backend = backend
        self.retry = retry or RetryPolicy()
        self.scripts: dict[str, Script] = load_all()

    async def load_scripts(self, deadline: float | None = None) -> None:
        """SCRIPT LOAD every script on every node (at start, and after Redis answers NOSCRIPT)."""
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + SCRIPT_LOAD_DEADLINE_S
        for node in range(await self.backend.scan_node_count()):
            for script in self.scripts.values():
                await self.run(deadline, "SCRIPT", "LOAD", script.source, node=node)

    async def run(
        self,
        deadline: float,
        *command: Any,
        wait: Wait | None = None,
        node: int | None = None,
        failed: BaseException | None = None,
    ) -> Any:
        """One command: a plain first attempt (the hot path), the retry policy once it has failed.

        `node` sends it to one node of the topology (SCAN, SCRIPT LOAD on Cluster) instead of by
        key. `failed` says the caller's own first attempt failed already: the policy backs off first.
        """

        def send() -> asyncio.Future[Any]:
            if node is None:
                return self.backend.submit(*command, wait=wait)
            return self.backend.submit_to(node, *command)

        if failed is None:
            future = send()
            timer = asyncio.get_running_loop().call_at(deadline, expire_future, future)
            outage = self.retry.outage
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
                failed = exc
            else:
                outage.answered()
                return result
            finally:
                timer.cancel()
        return await self.retry.call(send, deadline, failed=failed)

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

    async def evalsha(
        self,
        deadline: float,
        command: tuple[Any, ...],
        wait: Wait | None = None,
        *,
        failed: BaseException | None = None,
    ) -> Any:
        """Run a script command; on NOSCRIPT load the scripts and send it once more.

        `failed` is how the caller's own first attempt failed (transient, or NOSCRIPT).
        """
        if not isinstance(failed, NoScriptError):
            try:
                return await self.run(deadline, *command, wait=wait, failed=failed)
            except NoScriptError:
                pass
        log.info("redis lost its scripts (NOSCRIPT); reloading")
        await self.load_scripts(deadline)
        return await self.run(deadline, *command, wait=wait)

    async def many(self, commands: Sequence[tuple[Any, ...]], deadline: float) -> list[Any]:
        """Commands sent together in one pipeline (by key); retried together while transient."""

        async def attempt() -> list[Any]:
            return list(await asyncio.gather(*(self.backend.submit(*command) for command in commands)))

        return await self.retry.call(attempt, deadline) if commands else []


def expire_future(future: asyncio.Future[Any]) -> None:
    """Deadline timer: give up waiting (the reply, if it comes, is read and dropped)."""
    if not future.done():
        future.cancel()
