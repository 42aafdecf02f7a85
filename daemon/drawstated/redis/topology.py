"""How the daemon reaches Redis: one server, the master Sentinel names, or a Cluster.

Each is a Backend (pipeline.py): the store submits commands and never knows
which topology answers them. Credentials and TLS come from the config only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from redis.asyncio.sentinel import Sentinel

from drawstated.config import Config
from drawstated.redis.cluster import ClusterRouter
from drawstated.redis.pipeline import AutoPipeline, Backend, FixedEndpoint, Resolver
from drawstated.redis.resp import Endpoint

log = logging.getLogger("drawstated.redis.topology")


def connect_backend(
    config: Config,
    url: str | None,
    *,
    on_batch: Callable[[int], None] | None = None,
    on_connect: Callable[[], None] | None = None,
) -> Backend:
    """Redis as the config says: the URL's server, the master Sentinel names, or a Cluster."""
    template = Endpoint.from_url(
        url or "redis://127.0.0.1:6379/0",
        username=config.redis_username,
        password=config.redis_password,
        ssl_context=config.redis_ssl_context(),
    )
    connect_timeout_s = min(1.0, config.redis_socket_timeout_s)

    def pipeline_to(resolve: Resolver) -> AutoPipeline:
        return AutoPipeline(
            resolve,
            size=config.redis_pool_size,
            connect_timeout_s=connect_timeout_s,
            stall_timeout_s=config.redis_socket_timeout_s,
            on_batch=on_batch,
            on_connect=on_connect,
        )

    if config.redis_cluster:
        return ClusterRouter(
            config.cluster_seeds(),
            template,
            lambda endpoint: pipeline_to(FixedEndpoint(endpoint)),
            connect_timeout_s=connect_timeout_s,
            stall_timeout_s=config.redis_socket_timeout_s,
        )
    if config.redis_sentinels:
        return pipeline_to(SentinelResolver(config, template))
    return pipeline_to(FixedEndpoint(template))


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
