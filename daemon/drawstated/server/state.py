"""What every connection of one server shares: the op table, stats, the decoder and the byte budget.

One instance per server, handed to each Connection (uvicorn's ServerState). It also re-counts the
replies that clients leave unread, so the budget learns when a write buffer drains.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from drawstated.config import Config
from drawstated.ops import OpTable
from drawstated.server.decoding import RequestDecoder
from drawstated.server.flow import MemoryBudget, reply_reserves
from drawstated.stats import Stats

if TYPE_CHECKING:
    from drawstated.server.connection import Connection

#: How often replies a client has not read yet are re-counted against the budget (the transport
#: says when its buffer drains below the low mark only if it had gone past the high one).
REPLY_RECOUNT_S = 0.05


class ServerState:
    """What every connection of one server shares."""

    def __init__(self, config: Config, ops: OpTable, stats: Stats) -> None:
        self.config = config
        self.ops = ops
        self.stats = stats
        self.connections: set[Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        #: config.max_connections, or fewer if the process may not open that many descriptors.
        self.max_connections = config.max_connections
        #: Set while no request is in flight (shutdown waits on it).
        self.idle = asyncio.Event()
        self.idle.set()
        self.decoder = RequestDecoder(config)
        self.reserves = reply_reserves(config)
        self.budget = MemoryBudget(config.max_inflight_bytes, config.max_inflight_bytes_per_connection)
        #: Connections whose replies sit unread in their write buffer: recounted until drained.
        self.holding_replies: set[Connection] = set()
        self._recount: asyncio.TimerHandle | None = None

    def hold_every_connection(self) -> None:
        """The total budget is spent: stop reading from every connection, not just the one that read.

        Once per spell: until the budget wakes them, each connection that still reads pauses itself.
        """
        if self.budget.holding:
            return
        self.budget.holding = True
        for connection in self.connections:
            connection.wait_for_budget()

    def recount_replies(self, connection: Connection) -> None:
        self.holding_replies.add(connection)
        if self._recount is None:
            self._recount = asyncio.get_running_loop().call_later(REPLY_RECOUNT_S, self._recount_all)

    def _recount_all(self) -> None:
        self._recount = None
        for connection in list(self.holding_replies):
            if not connection.count_replies():
                self.holding_replies.discard(connection)
        if self.holding_replies:
            self._recount = asyncio.get_running_loop().call_later(REPLY_RECOUNT_S, self._recount_all)

    def request_started(self) -> None:
        self.stats.in_flight += 1
        self.idle.clear()

    def request_finished(self) -> None:
        self.stats.in_flight -= 1
        if self.stats.in_flight == 0:
            self.idle.set()
