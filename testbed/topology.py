"""Redis topologies on loopback ports for tests: a Sentinel-watched master with replicas, and a Cluster.

Real redis-server processes (the system's build when there is one: it has TLS
and cluster support), each in its own temp dir, all stopped by `cleanup()`.
The benchmark harness (benchmarks/cluster.py) builds its Cluster with these too,
passing `spawn` (its nodes must not see a terminal Ctrl-C and must die with it)
and `extra` config lines (a later line overrides an earlier one).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis

from drawstated.server.embedded import find_redis_server
from testbed.redis_proc import stop_process, wait_answering

#: Starts one server from its argv; the default is a plain Popen with output discarded (it logs to a file).
Spawn = Callable[[list[str]], "subprocess.Popen[bytes]"]


def _popen(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def redis_binary() -> str:
    system = Path("/usr/bin/redis-server")
    return str(system) if system.exists() else find_redis_server()


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port; for a cluster node, one whose bus port (+10000) is free as well."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not cluster_bus:
            return port
        if port + 10000 <= 65535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class TcpRedis:
    """One redis-server (or sentinel) on 127.0.0.1:<port>; restartable on the same port."""

    def __init__(
        self, root: Path, name: str, args: list[str], *, sentinel: bool = False, spawn: Spawn = _popen
    ) -> None:
        self.port = free_port(cluster_bus="cluster-enabled yes" in args)
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.args = args
        self.sentinel = sentinel
        self.spawn = spawn
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=1)

    def start(self) -> TcpRedis:
        conf = self.dir / "redis.conf"
        if not conf.exists():  # sentinels rewrite their own config: write it once
            lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", "save \"\"",
                     "appendonly no", f"logfile {self.dir / 'log'}", *self.args]  # fmt: skip
            if not self.sentinel:
                lines.append("repl-diskless-sync-delay 0")  # replicas sync at once
            conf.write_text("\n".join(lines) + "\n")
        command = [redis_binary(), str(conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = self.spawn(command)
        wait_answering(self.proc, self.client, self.dir / "log")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc)


class SentinelTopology:
    """A master, its replicas and three sentinels watching it as `name`."""

    def __init__(self, replicas: int = 1, name: str = "drawstate") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dsent-", dir="/tmp"))
        self.name = name
        self.master = TcpRedis(self.root, "master", []).start()
        self.replicas = [
            TcpRedis(self.root, f"replica{i}", [f"replicaof 127.0.0.1 {self.master.port}"]).start()
            for i in range(replicas)
        ]
        monitor = [
            f"sentinel monitor {name} 127.0.0.1 {self.master.port} 2",
            f"sentinel down-after-milliseconds {name} 500",
            f"sentinel failover-timeout {name} 3000",
            f"sentinel parallel-syncs {name} 1",
        ]
        self.sentinels = [
            TcpRedis(self.root, f"sentinel{i}", monitor, sentinel=True).start() for i in range(3)
        ]
        self.wait_settled(replicas)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def current_master_port(self) -> int:
        with self.sentinels[0].client() as client:
            return int(client.sentinel_get_master_addr_by_name(self.name)[1])

    def node(self, port: int) -> TcpRedis:
        return next(n for n in [self.master, *self.replicas] if n.port == port)

    def wait_settled(self, replicas: int) -> None:
        """Every sentinel sees the others and the replicas; the replicas are in sync."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                ready = True
                for sentinel in self.sentinels:
                    with sentinel.client() as client:
                        ready &= len(client.sentinel_sentinels(self.name)) == 2
                        ready &= len(client.sentinel_slaves(self.name)) >= replicas
                with self.node(self.current_master_port()).client() as master:
                    info = master.info("replication")
                    online = [v for k, v in info.items() if k.startswith("slave") and v["state"] == "online"]
                    ready &= len(online) >= replicas
                if ready:
                    return
            except (redis.RedisError, StopIteration):
                pass
            time.sleep(0.05)
        raise RuntimeError("sentinel topology did not settle")

    def cleanup(self) -> None:
        for node in [*self.sentinels, *self.replicas, self.master]:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def redis_cli() -> str:
    system = Path("/usr/bin/redis-cli")
    return str(system) if system.exists() else (shutil.which("redis-cli") or "redis-cli")


class ClusterTopology:
    """A Redis Cluster of `masters` masters with one replica each, made by `redis-cli --cluster create`.

    `extra` config lines go after the defaults (and override them); `spawn` starts each node.
    If building it fails, the nodes started so far are stopped before the error propagates.
    """

    def __init__(
        self, masters: int = 3, replicas: int = 1, *, extra: Sequence[str] = (), spawn: Spawn = _popen
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dclu-", dir="/tmp"))
        settings = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 1000",
                    "cluster-replica-validity-factor 0", "repl-diskless-sync-delay 0", *extra]  # fmt: skip
        self.nodes: list[TcpRedis] = []
        try:
            for i in range(masters * (1 + replicas)):
                self.nodes.append(TcpRedis(self.root, f"node{i}", settings, spawn=spawn))
                self.nodes[-1].start()
            create = [redis_cli(), "--cluster", "create", *self.addresses,
                      "--cluster-replicas", str(replicas), "--cluster-yes"]  # fmt: skip
            subprocess.run(create, check=True, capture_output=True, timeout=60)
            self.wait_ok()
        except BaseException:
            self.cleanup()
            raise

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{node.port}" for node in self.nodes]

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=2)

    def masters(self) -> list[TcpRedis]:
        found = []
        for node in self.nodes:
            try:
                with node.client() as client:
                    if client.info("replication")["role"] == "master":
                        found.append(node)
            except redis.RedisError:
                continue
        return found

    def wait_ok(self, timeout: float = 30) -> None:
        """Every live node says cluster_state:ok and every replica is in sync."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ok = True
                for node in self.nodes:
                    if node.proc is None or node.proc.poll() is not None:
                        continue
                    with node.client() as client:
                        ok &= b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO")
                        info = client.info("replication")
                        if info["role"] == "slave":
                            ok &= info.get("master_link_status") == "up"
                if ok:
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError("cluster did not become ok")

    def cleanup(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)
