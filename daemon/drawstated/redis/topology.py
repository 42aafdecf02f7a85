"""How the daemon reaches Redis: one server, the master Sentinel names, or a Cluster.

Each is a Backend (pipeline.py): the store submits commands and never knows
which topology answers them. Credentials and TLS come from the config only.
"""

from __future__ import annotations

from collections.abc import Callable

from drawstated.config import Config
from drawstated.redis.cluster import ClusterRouter
from drawstated.redis.pipeline import AutoPipeline, Backend, FixedEndpoint, Resolver
from drawstated.redis.resp import Endpoint
from drawstated.redis.sentinel import SentinelResolver


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
