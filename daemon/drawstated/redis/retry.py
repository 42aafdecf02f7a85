"""The retry policy of every Redis call: transient failures tried again, never past the deadline.

Transient: a lost or refused connection, a timeout, and the replies errors.py classes as
`RetryableReply` (a Redis that is loading, busy or out of memory, a master demoted in a failover,
a cluster slot in flux, a redirection the router gave up following: mid-migration, two nodes can
each answer MOVED to the other until the last SETSLOT lands). Anything else is an answer, not an
outage, and is returned at once.

One RetryPolicy per daemon. A call's first attempt is the caller's own (the hot path sends it
with no task, no tenacity); the policy takes over once that attempt has failed, and backs off
before every resend.

An outage is logged twice, whatever its length and load: one warning when the first attempt
fails, one when Redis answers again, with the failed attempts, the requests answered with a
retryable error meanwhile and the duration (OutageLog). Each failed attempt is DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as redis_errors
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from drawstated import errors
from drawstated.redis.errors import RetryableReply

log = logging.getLogger("drawstated.redis.retry")
T = TypeVar("T")

#: First backoff step and its ceiling, in seconds (full jitter in between).
BACKOFF_FIRST_S = 0.005
BACKOFF_MAX_S = 0.25


def is_transient(exc: BaseException) -> bool:
    if type(exc) is TimeoutError:
        return False  # our own deadline (asyncio.timeout): retrying cannot help
    # redis-py's own (Sentinel's discovery) are ConnectionError subclasses: MasterNotFoundError.
    return isinstance(
        exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError | RetryableReply
    )


class _StopAtDeadline:
    """Stop when the next sleep would end past the deadline (tenacity sets upcoming_sleep first)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        return asyncio.get_running_loop().time() + state.upcoming_sleep >= self.deadline


class OutageLog:
    """Redis unreachable, then answering again: one warning each, the counts in the second.

    One per daemon (Commands owns it). `attempt_failed` is told of every transient failure;
    `answered` of any reply from Redis, and costs one attribute check while no outage is on, so
    the hot path can call it. `failed_requests` counts requests answered with a retryable error
    (the daemon's stats); the second warning reports how many were answered during the outage.
    """

    __slots__ = ("_failed_at_start", "_failed_requests", "active", "attempts", "started")

    def __init__(self, failed_requests: Callable[[], int] | None = None) -> None:
        self._failed_requests = failed_requests or (lambda: 0)
        self.active = False
        self.attempts = 0
        self.started = 0.0
        self._failed_at_start = 0

    def attempt_failed(self, exc: BaseException) -> None:
        self.attempts += 1
        if self.active:
            return
        self.active = True
        self.started = time.monotonic()
        self._failed_at_start = self._failed_requests()
        log.warning(
            "redis unavailable: requests get retryable errors until it answers again",
            extra={"error": f"{type(exc).__name__}: {exc}"},
        )

    def answered(self) -> None:
        if not self.active:
            return
        self.active = False
        log.warning(
            "redis available again",
            extra={
                "outage_s": round(time.monotonic() - self.started, 3),
                "failed_attempts": self.attempts,
                "failed_requests": self._failed_requests() - self._failed_at_start,
            },
        )
        self.attempts = 0


def _log_retry(state: RetryCallState, outage: OutageLog | None) -> None:
    exc = state.outcome.exception() if state.outcome else None
    if outage is not None and exc is not None:
        outage.attempt_failed(exc)
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "redis attempt %d failed (%s: %s); retrying in %.0f ms",
            state.attempt_number,
            type(exc).__name__,
            exc,
            state.upcoming_sleep * 1000,
        )


class RetryPolicy:
    """Deadline-bounded retries with jittered exponential backoff (tenacity underneath).

    `on_retry` is told of each resend (the daemon's retry counter); the OutageLog of each failure
    and each answer. A transient failure that outlives the deadline is `redis_unavailable`; an
    attempt still waiting on Redis when the deadline comes is `deadline_exceeded`.
    """

    def __init__(
        self,
        *,
        outage: OutageLog | None = None,
        on_retry: Callable[[], None] | None = None,
        first_s: float = BACKOFF_FIRST_S,
        max_s: float = BACKOFF_MAX_S,
    ) -> None:
        #: Logs an outage once when it starts and once when it ends, not each failed attempt.
        self.outage = outage or OutageLog()
        self.on_retry = on_retry
        self.first_s = first_s
        self.max_s = max_s

    async def call(
        self, attempt: Callable[[], Awaitable[T]], deadline: float, *, failed: BaseException | None = None
    ) -> T:
        """Run `attempt` until it succeeds, fails for good, or the deadline (loop time) comes.

        `failed` is the transient failure of the caller's own first attempt: back off before the
        first resend. A RequestError an attempt raises is the answer, as it is.
        """
        outage = self.outage
        if failed is not None:
            outage.attempt_failed(failed)
            await self._backoff(deadline)
        loop = asyncio.get_running_loop()
        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_random_exponential(multiplier=self.first_s, max=self.max_s),
            stop=_StopAtDeadline(deadline),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            async for try_ in retrying:
                with try_:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise errors.deadline()
                    async with asyncio.timeout(remaining):
                        result = await attempt()
                    outage.answered()
                    return result
        except TimeoutError as exc:
            raise errors.deadline() from exc
        except errors.RequestError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                outage.answered()  # an answer, if not the one hoped for: Redis is there
                raise
            outage.attempt_failed(exc)
            raise errors.unavailable(f"redis unreachable: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("tenacity returns or raises: reraise=True and a stop that always comes")

    async def _backoff(self, deadline: float) -> None:
        """The pause before the first resend: the first backoff step, jittered, within the deadline."""
        if self.on_retry is not None:
            self.on_retry()
        pause = random.uniform(0, self.first_s)  # noqa: S311  # jitter, not a secret
        await asyncio.sleep(max(0.0, min(pause, deadline - asyncio.get_running_loop().time())))

    def _before_sleep(self, state: RetryCallState) -> None:
        if self.on_retry is not None:
            self.on_retry()
        _log_retry(state, self.outage)
