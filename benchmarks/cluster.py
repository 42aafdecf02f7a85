"""The harness's own Redis Cluster (`--topology cluster`): 3 masters + 3 replicas on loopback TCP ports.

Built with testbed.topology.ClusterTopology (the tests' cluster, made by
`redis-cli --cluster create`), with the harness's process rules: each node in
its own session (a terminal Ctrl-C reaches only the harness, which stops the
daemon first and the nodes after it) and dying with the harness
(PR_SET_PDEATHSIG). Persistence is off unless `--aof`; the node timeout is
Redis's default 15 s rather than the tests' 1 s, so a node starved of CPU
under load is not failed over in the middle of a measurement (a role change
during the run is still detected and reported).

Redis CPU and RSS are summed over the master processes ("redis"); the
replicas, which apply every write the masters propagate, are summed apart
("replicas").
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

import redis

from drawstated.server.embedded import die_with_parent
from testbed.topology import ClusterTopology, TcpRedis

MASTERS = 3
REPLICAS_PER_MASTER = 1
#: Redis's default; the tests' 1000 ms would let a CPU-starved node be failed over mid-run.
NODE_TIMEOUT_MS = 15000


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # each node logs to the file its config names
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # no SIGINT from the terminal: the harness stops it
        preexec_fn=die_with_parent,  # noqa: PLW1509  # prctl only; no locks taken
    )


class OwnCluster:
    """A started cluster: its seeds, its master and replica pids, and what the run left on each master."""

    def __init__(self, *, aof: bool = False) -> None:
        extra = [f"cluster-node-timeout {NODE_TIMEOUT_MS}"]
        if aof:
            extra += ["appendonly yes", "appendfsync everysec"]
        self.topology = ClusterTopology(MASTERS, REPLICAS_PER_MASTER, extra=extra, spawn=_spawn)
        self.initial_masters = self._master_ports()

    @property
    def seeds(self) -> tuple[str, ...]:
        return tuple(self.topology.addresses)

    def _roles(self) -> dict[int, str]:
        roles = {}
        for node in self.topology.nodes:
            try:
                with node.client() as client:
                    roles[node.port] = str(client.info("replication")["role"])
            except redis.RedisError:
                roles[node.port] = "down"
        return roles

    def _master_ports(self) -> list[int]:
        return sorted(port for port, role in self._roles().items() if role == "master")

    def _nodes(self, ports: Sequence[int]) -> list[TcpRedis]:
        return [node for node in self.topology.nodes if node.port in ports]

    def master_pids(self) -> list[int]:
        return [n.proc.pid for n in self._nodes(self.initial_masters) if n.proc is not None]

    def replica_pids(self) -> list[int]:
        replicas = [n.port for n in self.topology.nodes if n.port not in self.initial_masters]
        return [n.proc.pid for n in self._nodes(replicas) if n.proc is not None]

    @property
    def pids(self) -> list[int]:
        return [node.proc.pid for node in self.topology.nodes if node.proc is not None]

    def version(self) -> str:
        with self.topology.nodes[0].client() as client:
            return str(client.info("server").get("redis_version", "?"))

    def summary(self) -> dict[str, Any]:
        """Masters and replicas, keys per master (DBSIZE) and whether any role changed during the run."""
        keys = {}
        for node in self._nodes(self.initial_masters):
            try:
                with node.client() as client:
                    keys[f"127.0.0.1:{node.port}"] = int(client.dbsize())
            except redis.RedisError:
                keys[f"127.0.0.1:{node.port}"] = None
        now = self._master_ports()
        return {
            "masters": len(self.initial_masters),
            "replicas": len(self.topology.nodes) - len(self.initial_masters),
            "node_timeout_ms": NODE_TIMEOUT_MS,
            "keys_per_master": keys,
            "masters_changed": now != self.initial_masters,
            "transport": "TCP loopback (127.0.0.1)",
        }

    def stop(self) -> None:
        self.topology.cleanup()
