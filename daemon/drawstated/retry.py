"""Retries of transient Redis failures, bounded by the request's deadline and never past it.

Transient: a lost or refused connection, a timeout, a Redis that is loading,
busy or out of memory, a replica that became read-only in a failover, a cluster slot in flux (a
redirection the router gave up following: mid-migration, two nodes can each
answer MOVED to the other until the last SETSLOT lands). Anything else is an
answer, not an outage, and is returned at once.
"""

from __future__ import annotations

import asyncio
import logging
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


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
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
        _log_retry(state)

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
                    return await attempt()
    except TimeoutError as exc:
        raise errors.deadline() from exc
    except errors.RequestError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise errors.unavailable(f"redis unreachable: {type(exc).__name__}: {exc}") from exc
        raise
    raise AssertionError("unreachable: tenacity either returns or raises")
