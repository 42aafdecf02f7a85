"""Retries of transient Redis failures, bounded by the request's deadline and never past it.

Transient: a lost or refused connection, a timeout, a Redis that is loading,
busy or out of memory, a replica that became read-only in a failover, a cluster slot in flux (a
redirection the router gave up following: mid-migration, two nodes can each
answer MOVED to the other until the last SETSLOT lands). Anything else is an
answer, not an outage, and is returned at once.

An outage is logged twice, whatever its length and load: one warning when the first attempt
fails, one when Redis answers again, with the failed attempts, the requests answered with a
retryable error meanwhile and the duration (OutageLog). Each failed attempt is DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis import exceptions as redis_errors
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_random_exponential

from drawstated import errors

log = logging.getLogger("drawstated.retry")
T = TypeVar("T")

#: First backoff step and its ceiling, in seconds (full jitter in between).
BACKOFF_FIRST_S = 0.005
BACKOFF_MAX_S = 0.25
#: OOM too: a script refused for memory changed nothing (Redis refuses a script's first write,
#: and only its first), so trying again once memory frees up is safe.
_OUTAGE_REPLIES = ("BUSY", "LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "OOM")
_UNSETTLED_REDIRECTS = ("MOVED ", "ASK ")  # what the cluster router returns once it stops following
_TRANSIENT_PREFIXES = _OUTAGE_REPLIES + _UNSETTLED_REDIRECTS


def is_transient(exc: BaseException) -> bool:
    if type(exc) is TimeoutError:
        return False  # our own deadline (asyncio.timeout): retrying cannot help
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | OSError):
        return True  # BusyLoadingError and ReadOnlyError are ConnectionError subclasses
    return isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_TRANSIENT_PREFIXES)


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


async def with_retries(
    attempt: Callable[[], Awaitable[T]],
    deadline: float,
    on_retry: Callable[[], None] | None = None,
    *,
    first_failed: bool = False,
    outage: OutageLog | None = None,
) -> T:
    """Run `attempt` until it succeeds, fails for good, or the deadline (loop time) comes.

    A transient failure that outlives the deadline is `redis_unavailable`; an
    attempt still waiting on Redis when the deadline comes is `deadline_exceeded`.
    `first_failed` says the caller's own first attempt failed already: back off first.
    """
    loop = asyncio.get_running_loop()

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry()
        _log_retry(state, outage)

    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=BACKOFF_FIRST_S, max=BACKOFF_MAX_S),
        stop=_StopAtDeadline(deadline),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        if first_failed:
            await asyncio.sleep(min(BACKOFF_FIRST_S, max(0.0, deadline - loop.time())))
        async for try_ in retrying:
            with try_:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise errors.deadline()
                async with asyncio.timeout(remaining):
                    result = await attempt()
                if outage is not None:
                    outage.answered()
                return result
    except TimeoutError as exc:
        raise errors.deadline() from exc
    except errors.RequestError:
        raise
    except Exception as exc:
        if not is_transient(exc):
            if outage is not None:
                outage.answered()  # an answer, if not the one hoped for: Redis is there
            raise
        if outage is not None:
            outage.attempt_failed(exc)
        raise errors.unavailable(f"redis unreachable: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("unreachable: tenacity either returns or raises")
