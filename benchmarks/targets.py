"""The two things measured, behind one interface: the sidecar (drawstate.Client) and direct redis-py.

`Sidecar` is what a game process does with drawstate. `Direct` is what it would
do without it: `SET key json EX 3600` of the same JSON (`json.dumps` of the
same dict) on the same Redis through redis-py with hiredis, GET + parse to
load, DEL to complete, GETDEL + parse to roll back. Direct keeps no index and
no tombstones: it is the floor the sidecar's extra safety is priced against.
On a cluster, direct is `redis.RedisCluster` (hiredis too), and its keys are
the daemon's own state key names, `{lock_key}` hash tag included, so they
spread over the slots (and masters) exactly as the sidecar's do.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Protocol

import redis

from drawstate import Client, DrawState
from drawstated.keys import state_key

TTL_S = 3600
CALL_TIMEOUT_S = 10.0
NAMES = ("sidecar", "direct")


class Target(Protocol):
    name: str

    def ping(self) -> None: ...
    def save(self, state: DrawState) -> None: ...
    def load(self, state: DrawState) -> DrawState | None: ...
    def complete(self, state: DrawState) -> None: ...
    def rollback(self, state: DrawState) -> DrawState | None: ...
    def close(self) -> None: ...


class Sidecar:
    name = "sidecar"

    def __init__(self, socket_path: str) -> None:
        # A generous call timeout: an overloaded run should show up as latency, not as errors.
        self.client = Client(socket_path, timeout=CALL_TIMEOUT_S)

    def ping(self) -> None:
        self.client.ping()

    def save(self, state: DrawState) -> None:
        self.client.save(state)

    def load(self, state: DrawState) -> DrawState | None:
        return self.client.load(state.lock_key, state.operation_id)

    def complete(self, state: DrawState) -> None:
        self.client.complete(state.lock_key, state.operation_id)

    def rollback(self, state: DrawState) -> DrawState | None:
        return self.client.rollback(state, reason="benchmark").state

    def close(self) -> None:
        self.client.close()


def direct_client(redis_url: str, cluster_seeds: Sequence[str] = ()) -> redis.Redis | redis.RedisCluster:
    """redis-py on the benchmark's Redis: a RedisCluster from the seeds when there are any."""
    if not cluster_seeds:
        return redis.Redis.from_url(redis_url, socket_timeout=CALL_TIMEOUT_S)
    nodes = [redis.cluster.ClusterNode(*_host_port(seed)) for seed in cluster_seeds]
    return redis.RedisCluster(startup_nodes=nodes, socket_timeout=CALL_TIMEOUT_S)


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host, int(port)


class Direct:
    name = "direct"

    def __init__(self, client: redis.Redis | redis.RedisCluster, prefix: str) -> None:
        self.redis = client
        self.prefix = prefix

    def _key(self, state: DrawState) -> str:
        return state_key(self.prefix, state.lock_key, state.operation_id)

    def ping(self) -> None:
        self.redis.ping()

    def save(self, state: DrawState) -> None:
        self.redis.set(self._key(state), json.dumps(state.to_dict()), ex=TTL_S)

    def load(self, state: DrawState) -> DrawState | None:
        raw = self.redis.get(self._key(state))
        return None if raw is None else DrawState.from_dict(json.loads(raw))

    def complete(self, state: DrawState) -> None:
        self.redis.delete(self._key(state))

    def rollback(self, state: DrawState) -> DrawState | None:
        raw = self.redis.getdel(self._key(state))
        return None if raw is None else DrawState.from_dict(json.loads(raw))

    def close(self) -> None:
        self.redis.close()


def open_target(
    name: str, socket_path: str, redis_url: str, prefix: str, cluster_seeds: Sequence[str] = ()
) -> Target:
    if name == "sidecar":
        return Sidecar(socket_path)
    if name == "direct":
        return Direct(direct_client(redis_url, cluster_seeds), prefix)
    raise ValueError(f"unknown target {name!r}")
