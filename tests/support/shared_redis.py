"""The session's shared Redis as the tests name it, and a direct redis-py client on it.

A cluster's "URL" is `cluster:<seed>,<seed>` in the tests only; make_config turns it into
Config.redis_cluster. Tests plant and inspect keys with direct_client, whatever the topology.
"""

from __future__ import annotations

import redis

CLUSTER_PREFIX = "cluster:"


def direct_client(url: str) -> redis.Redis | redis.RedisCluster:
    """redis-py on the test's Redis, whatever its topology, to plant and inspect keys."""
    if url.startswith(CLUSTER_PREFIX):
        host, port = url.removeprefix(CLUSTER_PREFIX).split(",")[0].rsplit(":", 1)
        return redis.RedisCluster(host=host, port=int(port), socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)
