"""Sentinel: where the current master is, asked each time a connection opens.

redis-py's asyncio Sentinel client does the asking (it knows the Sentinel protocol, including
trying each Sentinel in turn); the connections themselves are the daemon's own (resp.py).
"""

from __future__ import annotations

import dataclasses
import logging

from redis.asyncio.sentinel import Sentinel

from drawstated.config import Config
from drawstated.redis.resp import Endpoint

log = logging.getLogger("drawstated.redis.sentinel")


class SentinelResolver:
    """Asks Sentinel for the current master of `sentinel_master`, each time a connection opens.

    After a failover the old master's connections fail or answer READONLY; the
    pool drops them, and the next connection lands on the promoted replica.
    """

    def __init__(self, config: Config, template: Endpoint) -> None:
        assert config.sentinel_master is not None
        self.master = config.sentinel_master
        self.template = template
        timeout = min(1.0, config.redis_socket_timeout_s)
        self.sentinel = Sentinel(  # type: ignore[no-untyped-call]
            config.sentinel_addresses(),
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
        )
        self.last: tuple[str, int] | None = None

    async def __call__(self) -> Endpoint:
        host, port = await self.sentinel.discover_master(self.master)  # MasterNotFoundError: transient
        if (host, port) != self.last:
            log.warning("redis master is %s:%s (from sentinel)", host, port)
            self.last = (host, port)
        return dataclasses.replace(self.template, host=host, port=int(port), path=None)

    async def aclose(self) -> None:
        for sentinel in self.sentinel.sentinels:
            await sentinel.aclose()
