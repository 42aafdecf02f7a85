"""Resending a request while its answer is retryable: one policy for both clients and for MultiDraw.

A request that failed with a retryable error may or may not have taken effect: a save whose
reply was lost may be in Redis. Sending it again unchanged (the same token) is always safe: the
daemon answers a repeat as it answered the first. `Retry` says how often and how long, with
jittered exponential back-off. MultiDraw resends until a deadline and then, if any attempt may
have reached Redis, says the outcome is unknown (OutcomeUnknown) rather than "not done";
a Client with a `retry=` policy resends a few times and raises the last error.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from drawstate.errors import (
    DrawStateError,
    InternalError,
    OutcomeUnknown,
    Overloaded,
    SidecarTimeout,
    SidecarUnavailable,
)

log = logging.getLogger("drawstate.retry")

#: How long MultiDraw resends a save or rollback (same token) while the answer is retryable.
RESEND_DEADLINE_S = 5.0
#: First back-off between resends (doubled each time, with full jitter), and its ceiling.
RETRY_BACKOFF_S = 0.05
RETRY_BACKOFF_MAX_S = 1.0
_sleep = time.sleep  # seams, so tests can count resends without waiting
_clock = time.monotonic
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Retry:
    """How to resend a retryable failure: at most `attempts` in all (None: no count), within
    `deadline_s` (None: no deadline), backing off from `backoff_s` up to `max_backoff_s`."""

    attempts: int | None = 3
    deadline_s: float | None = None
    backoff_s: float = RETRY_BACKOFF_S
    max_backoff_s: float = RETRY_BACKOFF_MAX_S
    #: Past the limits, raise OutcomeUnknown when an attempt may have taken effect.
    doubt_is_unknown: bool = False

    def __post_init__(self) -> None:
        if self.attempts is None and self.deadline_s is None:
            raise ValueError("a Retry needs attempts, a deadline, or both")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise ValueError(f"deadline_s must be positive, got {self.deadline_s}")
        if not 0 < self.backoff_s <= self.max_backoff_s:
            raise ValueError("backoff_s must be positive and at most max_backoff_s")


def maybe_applied(exc: DrawStateError) -> bool:
    """Whether a failed request may still have taken effect: all but "never sent" and "refused"."""
    if isinstance(exc, SidecarTimeout):
        return True
    return not isinstance(exc, (SidecarUnavailable, Overloaded))


class _Attempts:
    """The state of one resent request: how many tries, whether one may have applied, the next pause."""

    def __init__(self, retry: Retry, what: str) -> None:
        self.retry = retry
        self.what = what
        self.deadline = None if retry.deadline_s is None else _clock() + retry.deadline_s
        self.tries = 0
        self.maybe = False
        self.backoff = retry.backoff_s

    def pause_after(self, exc: DrawStateError) -> float:
        """The pause before the next attempt; raises the final error when there is none."""
        self.tries += 1
        if not exc.retryable:
            if self.retry.doubt_is_unknown and isinstance(exc, InternalError):
                # The daemon failed after it took the request: whether Redis applied it is not known.
                raise OutcomeUnknown(
                    f"{self.what}: the daemon failed while handling it ({exc}); it may have taken effect: "
                    "resend it",
                    details=exc.details,
                ) from exc
            raise exc
        self.maybe = self.maybe or maybe_applied(exc)
        pause = min(self.backoff, self.retry.max_backoff_s) * (0.5 + random.random())  # noqa: S311  # jitter
        self.backoff *= 2
        out_of_tries = self.retry.attempts is not None and self.tries >= self.retry.attempts
        out_of_time = self.deadline is not None and _clock() + pause >= self.deadline
        if out_of_tries or out_of_time:
            if self.retry.doubt_is_unknown and self.maybe and not isinstance(exc, OutcomeUnknown):
                raise OutcomeUnknown(
                    f"no definite answer for {self.what} after {self.tries} attempts ({exc}); "
                    "it may have taken effect: resend it",
                    details=exc.details,
                ) from exc
            raise exc
        log.debug(
            "retrying %s in %.0f ms after %s (attempt %d)", self.what, pause * 1000, exc.code, self.tries
        )
        return pause


def resend(retry: Retry, what: str, call: Callable[[], T]) -> T:
    """`call()` until it answers definitely, by `retry`. `call` must send the same request each time."""
    attempts = _Attempts(retry, what)
    while True:
        try:
            return call()
        except DrawStateError as exc:
            _sleep(attempts.pause_after(exc))


async def aresend(retry: Retry, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """`resend` for coroutines: `await call()` until it answers definitely, by `retry`."""
    attempts = _Attempts(retry, what)
    while True:
        try:
            return await call()
        except DrawStateError as exc:
            await asyncio.sleep(attempts.pause_after(exc))


def session_retry(deadline_s: float) -> Retry:
    """MultiDraw's policy: resend until `deadline_s`, then OutcomeUnknown if it may have applied."""
    return Retry(attempts=None, deadline_s=deadline_s, doubt_is_unknown=True)
