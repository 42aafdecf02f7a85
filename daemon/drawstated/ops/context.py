"""What every op is built with, and the two shapes an op takes.

A coroutine op is awaited in a task: `await op(request, deadline)` returns the ok reply's fields or
raises RequestError. A fast op answers from a callback with no task at all (`op.start(request,
deadline, respond)`; `respond` gets the fields or the RequestError exactly once): save today, the hot
path. The connection dispatches on which table an op is in (ops/__init__.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from drawstate.limits import Limits
from drawstated.config import Config
from drawstated.deferred import DeferredCleanup
from drawstated.errors import RequestError
from drawstated.stats import Stats
from drawstated.storage.store import Store
from drawstated.storage.stream import OutcomeStream, Publisher

#: Room kept in a reply frame for its envelope, by ops whose pages end before a frame is full.
FRAME_HEADROOM_BYTES = 4096

Reply = dict[str, Any]
Request = Mapping[str, Any]
Respond = Callable[[Reply | RequestError], None]
CoroutineOp = Callable[[Request, float], Awaitable[Reply]]


class FastOp(Protocol):
    """An op answered from the Redis reply's callback: no task, no coroutine chain."""

    def start(self, request: Request, deadline: float, respond: Respond) -> None: ...


@dataclass(frozen=True, slots=True)
class OpContext:
    """The daemon's parts an op may use; one per daemon, passed to every op."""

    config: Config
    store: Store
    stream: OutcomeStream
    publisher: Publisher
    cleanup: DeferredCleanup
    stats: Stats

    @property
    def limits(self) -> Limits:
        return self.config.limits


def loop_time() -> float:
    """Now, on the event loop's clock (the one deadlines are on)."""
    return asyncio.get_running_loop().time()
