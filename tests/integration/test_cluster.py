"""Redis Cluster under load: a slot migrated and a master failed over, with no acknowledged save lost.

Game-like load comes from saver processes (tests/support/saver.py) that retry
retryable errors with the same token and report the last acknowledged draw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from redis.crc import key_slot

from drawstate import Client
from tests.conftest import wait_until
from tests.support.topology import ClusterTopology, TcpRedis

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster():
    topology = ClusterTopology()
    yield topology
    topology.cleanup()


def _owner(cluster: ClusterTopology, slot: int) -> TcpRedis:
    with cluster.masters()[0].client() as client:
        for first, last, master, *_ in client.execute_command("CLUSTER SLOTS"):
            if first <= slot <= last:
                return next(node for node in cluster.nodes if node.port == int(master[1]))
    raise AssertionError(f"no owner for slot {slot}")


def _lock_keys_on(cluster: ClusterTopology, node: TcpRedis, count: int) -> list[str]:
    keys, i = [], 0
    while len(keys) < count:
        lock_key = f"cluster:player:{i}"
        if _owner(cluster, key_slot(f"lottery:state:{{{lock_key}}}:x".encode())) is node:
            keys.append(lock_key)
        i += 1
    return keys


def _start_savers(socket_path: Path, lock_keys: list[str], stop_file: Path, durability: str):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "client")])}
    command = [sys.executable, "-m", "tests.support.saver", str(socket_path)]
    return [
        subprocess.Popen(
            [*command, key, "90", durability, str(stop_file)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        for key in lock_keys
    ]


def _check_reports(cluster: ClusterTopology, savers) -> list[dict]:
    reports = [json.loads(saver.communicate(timeout=60)[0]) for saver in savers]
    with cluster.client() as rdb:
        for report in reports:
            assert report["fatal"] == [], report  # only retryable errors reached the game
            stored = json.loads(rdb.get(f"lottery:state:{{{report['lock_key']}}}:{report['operation_id']}"))
            assert stored["completed_count"] >= report["acked"] > 0  # no acknowledged save lost
    return reports


def _saves_ok(probe: Client) -> int:
    return int(probe.stats()["requests"].get("save", {}).get("ok", 0))


def _migrate_slot(
    cluster: ClusterTopology, slot: int, source: TcpRedis, target: TcpRedis, in_flux: Callable[[], None]
) -> None:
    """The steps `redis-cli --cluster reshard` takes for one slot, keys moved in small batches.

    The last SETSLOT goes to the target, not first as redis-cli sends it: until
    it lands, the source answers MOVED to the target and the still-importing
    target MOVED back, the window a node learning of the move by gossip opens
    too. `in_flux` runs inside that window.
    """
    with source.client() as src, target.client() as dst:
        source_id, target_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while names := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 2):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names)
            time.sleep(0.01)  # let saves run against a half-moved slot
        for node in sorted(cluster.masters(), key=lambda node: node is target):
            if node is target:
                in_flux()
            with node.client() as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)


def test_every_op_on_the_cluster_routes_each_lock_key_to_its_slot(
    cluster, make_config, start_daemon, new_state
):
    daemon = start_daemon(make_config(redis_cluster=tuple(cluster.addresses[:1])))
    with daemon.client() as client:
        states = [new_state(lock_key=f"route:{i}") for i in range(40)]
        for state in states:
            client.save(state)
        assert len({_owner(cluster, key_slot(f"{{{s.lock_key}}}".encode())).port for s in states}) == 3
        assert {i.operation_id for i in client.iter_pending(limit=7)} == {s.operation_id for s in states}
        assert all(client.load(s.lock_key).operation_id == s.operation_id for s in states)


def test_slot_migrated_under_load_fails_no_request_beyond_retryable_ones(cluster, make_config, start_daemon):
    daemon = start_daemon(make_config(redis_cluster=tuple(cluster.addresses[:1])))
    source = cluster.masters()[0]
    target = next(node for node in cluster.masters() if node is not source)
    lock_keys = _lock_keys_on(cluster, source, 1)
    hot_slot = key_slot(f"{{{lock_keys[0]}}}".encode())
    others = _lock_keys_on(cluster, target, 2)
    stop_file = daemon.config.socket_path.parent / "stop"
    savers = _start_savers(daemon.config.socket_path, lock_keys + others, stop_file, "ack")
    with Client(daemon.config.socket_path) as probe:
        wait_until(lambda: _saves_ok(probe) > 300)
        retried = probe.stats()["redis_retries"]
        # Saves on the hot slot bounce between the two nodes: retried, not failed.
        _migrate_slot(
            cluster, hot_slot, source, target,
            in_flux=lambda: wait_until(lambda: probe.stats()["redis_retries"] > retried + 3),
        )  # fmt: skip
        moved_at = _saves_ok(probe)
        wait_until(lambda: _saves_ok(probe) > moved_at + 300)
    stop_file.touch()
    reports = _check_reports(cluster, savers)
    assert _owner(cluster, hot_slot) is target
    print(f"slot {hot_slot} migrated under load; errors seen by the game: {[r['errors'] for r in reports]}")


def test_cluster_master_failover_loses_no_acknowledged_replicated_save(cluster, make_config, start_daemon):
    daemon = start_daemon(make_config(redis_cluster=tuple(cluster.addresses), durability="replicated"))
    victim = cluster.masters()[0]
    lock_keys = _lock_keys_on(cluster, victim, 3)
    stop_file = daemon.config.socket_path.parent / "stop"
    savers = _start_savers(daemon.config.socket_path, lock_keys, stop_file, "replicated")
    with Client(daemon.config.socket_path) as probe:
        wait_until(lambda: _saves_ok(probe) > 300)
        victim.kill()
        killed_at = time.monotonic()
        wait_until(lambda: victim not in cluster.masters() and len(cluster.masters()) == 3, timeout=30)
        victim.start()  # back as a replica of the promoted one: replicated saves can succeed again
        before = _saves_ok(probe)
        wait_until(lambda: _saves_ok(probe) > before + 200, timeout=60)
        recovered = time.monotonic() - killed_at
    stop_file.touch()
    reports = _check_reports(cluster, savers)
    gap = max(r["longest_gap_s"] for r in reports)
    print(f"cluster failover: longest client-visible gap {gap:.2f} s, saves flowing {recovered:.2f} s after "
          f"the kill; errors {[r['errors'] for r in reports]}")  # fmt: skip
    with victim.client() as client:
        assert client.info("replication")["role"] == "slave"
