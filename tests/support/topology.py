"""Redis topologies on loopback ports for tests: a Sentinel-watched master with replicas, and a Cluster.

Real redis-server processes (the system's build when there is one: it has TLS
and cluster support), each in its own temp dir, all stopped by `cleanup()`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from drawstated.embedded import find_redis_server

START_TIMEOUT_S = 10.0


def redis_binary() -> str:
    system = Path("/usr/bin/redis-server")
    return str(system) if system.exists() else find_redis_server()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpRedis:
    """One redis-server (or sentinel) on 127.0.0.1:<port>; restartable on the same port."""

    def __init__(self, root: Path, name: str, args: list[str], *, sentinel: bool = False) -> None:
        self.port = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.args = args
        self.sentinel = sentinel
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
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis exited: {(self.dir / 'log').read_text()[-2000:]}")
            try:
                with self.client() as client:
                    client.ping()
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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
