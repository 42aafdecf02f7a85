"""Resending one request until the daemon answers it definitely, and saying so when it never does.

A request that failed with a retryable error may or may not have taken effect: a save whose
reply was lost may be in Redis. Sending it again unchanged (the same token) is always safe:
the daemon answers a repeat as it answered the first. So MultiDraw resends with jittered
back-off until an answer is definite or a deadline passes; then, if any attempt may have
reached Redis, the outcome is unknown (OutcomeUnknown), else it surely did not happen (the
last error).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from drawstate.errors import DrawStateError, OutcomeUnknown, Overloaded, SidecarTimeout, SidecarUnavailable

#: How long a save or rollback is resent (same token) while the answer is retryable, by default.
RESEND_DEADLINE_S = 5.0
#: First back-off between resends (doubled each time, with full jitter), and its ceiling.
RETRY_BACKOFF_S = 0.05
RETRY_BACKOFF_MAX_S = 1.0
_sleep = time.sleep  # seams, so tests can count resends without waiting
_clock = time.monotonic
T = TypeVar("T")


def maybe_applied(exc: DrawStateError) -> bool:
    """Whether a failed request may still have taken effect: all but "never sent" and "refused"."""
    if isinstance(exc, SidecarTimeout):
        return True
    return not isinstance(exc, (SidecarUnavailable, Overloaded))


def resend(deadline_s: float, what: str, call: Callable[[], T]) -> T:
    """`call()` until it answers definitely; past `deadline_s`, OutcomeUnknown if it may have applied.

    `call` must send the same request each time (the same token). A non-retryable error is an
    answer and is raised at once.
    """
    deadline = _clock() + deadline_s
    maybe = False
    backoff = RETRY_BACKOFF_S
    while True:
        try:
            return call()
        except DrawStateError as exc:
            if not exc.retryable:
                raise
            maybe = maybe or maybe_applied(exc)
            pause = min(backoff, RETRY_BACKOFF_MAX_S) * (0.5 + random.random())  # noqa: S311  # jitter
            if _clock() + pause >= deadline:
                if maybe and not isinstance(exc, OutcomeUnknown):
                    raise OutcomeUnknown(
                        f"no definite answer for {what} within {deadline_s} s ({exc}); "
                        "it may have taken effect: resend it",
                        details=exc.details,
                    ) from exc
                raise
            _sleep(pause)
            backoff *= 2
