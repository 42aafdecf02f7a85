"""Redis Cluster under load: a slot migrated and a master failed over, with no acknowledged save lost.

Game-like load comes from saver processes (tests/support/saver.py) that retry
retryable errors with the same token and report the last acknowledged draw.
A slot can also stay half-migrated (a reshard stopped midway): its moved keys
are then reached only by following ASK, which no retry would wait out.
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
from redis.exceptions import AskError

from drawstate import Client, RedisUnavailable
from testbed.topology import ClusterTopology, TcpRedis
from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The request deadline of the half-migrated slot test: each op must succeed within it.
ASK_DEADLINE_S = 2.0
#: Keys moved per MIGRATE when leaving a slot half-migrated.
MIGRATE_BATCH = 100


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
    return int(probe.stats().requests.get("save", {}).get("ok", 0))


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
        retried = probe.stats().redis_retries
        # Saves on the hot slot bounce between the two nodes: retried, not failed.
        _migrate_slot(
            cluster, hot_slot, source, target,
            in_flux=lambda: wait_until(lambda: probe.stats().redis_retries > retried + 3),
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


def _half_migrate(slot: int, source: TcpRedis, target: TcpRedis) -> None:
    """Leave `slot` MIGRATING on `source`, IMPORTING on `target`, with every key moved: a reshard stopped
    before its final SETSLOT NODE. The source then answers ASK for each key of the slot, for good."""
    with source.client() as src, target.client() as dst:
        source_id, target_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while names := src.execute_command("CLUSTER GETKEYSINSLOT", slot, MIGRATE_BATCH):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *names)
        assert src.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
        with pytest.raises(AskError):
            src.get(f"{{{slot}}}")  # any key of the slot: ASK, to the target


def _settle(cluster: ClusterTopology, slot: int, target: TcpRedis) -> None:
    """The reshard's last step: every master learns that `target` owns `slot`."""
    with target.client() as dst:
        target_id = dst.execute_command("CLUSTER MYID")
    for node in cluster.masters():
        with node.client() as client:
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)


def _within_deadline(call: Callable[[], object]) -> object:
    started = time.monotonic()
    result = call()  # the client raises if the daemon gives up at the deadline
    assert time.monotonic() - started < ASK_DEADLINE_S
    return result


@pytest.fixture
def half_migrated(cluster, make_config, start_daemon, new_state):
    """A daemon, and a lock key with three saved operations whose slot is left half-migrated."""
    daemon = start_daemon(make_config(redis_cluster=tuple(cluster.addresses[:1]),
                                      default_deadline_ms=int(ASK_DEADLINE_S * 1000)))  # fmt: skip
    source = cluster.masters()[0]
    target = next(node for node in cluster.masters() if node is not source)
    lock_key = _lock_keys_on(cluster, source, 1)[0]
    with daemon.client(timeout=ASK_DEADLINE_S) as client:
        states = [new_state(lock_key=lock_key) for _ in range(3)]
        for state in states:  # the last one is the newest
            client.save(state)
    slot = key_slot(f"{{{lock_key}}}".encode())
    _half_migrate(slot, source, target)
    return daemon, states, slot, target


def test_reads_of_a_lock_key_on_a_half_migrated_slot_follow_ask_within_one_deadline(half_migrated):
    daemon, states, _, _ = half_migrated
    lock_key, ids = states[0].lock_key, {state.operation_id for state in states}
    with daemon.client(timeout=ASK_DEADLINE_S) as client:
        loaded = _within_deadline(lambda: client.load(lock_key, states[0].operation_id))
        assert loaded is not None and loaded.operation_id == states[0].operation_id
        newest = _within_deadline(lambda: client.load(lock_key))
        assert newest is not None and newest.operation_id == states[-1].operation_id
        page = _within_deadline(lambda: client.pending(lock_key))
        assert {item.operation_id for item in page.items} == ids
        everywhere = _within_deadline(client.pending)  # SCAN finds them on the target
        assert {item.operation_id for item in everywhere.items} == ids


def test_writes_on_a_half_migrated_slot_reach_the_target_stay_retryable_and_land_once_it_settles(
    half_migrated, cluster
):
    """Redis refuses a multi-key script on an importing slot while one of its keys is missing (TRYAGAIN),
    and a save or close always names a tombstone key that does not exist yet: no write can land until
    the reshard finishes. TRYAGAIN comes from the target only, so it shows ASK was followed."""
    daemon, (completed, rolled_back, kept), slot, target = half_migrated
    lock_key = kept.lock_key
    kept.completed_count, kept.results = 1, [7]
    with daemon.client(timeout=ASK_DEADLINE_S) as client:
        with pytest.raises(RedisUnavailable, match="TRYAGAIN"):
            _within_deadline(lambda: client.save(kept, expect_version=1, token="draw-1"))
        with pytest.raises(RedisUnavailable, match="TRYAGAIN"):
            _within_deadline(lambda: client.complete(lock_key, completed.operation_id))
        refund = _within_deadline(lambda: client.rollback(rolled_back))
        assert refund.cleanup == "deferred"  # refunded now, removed once Redis takes the write

        _settle(cluster, slot, target)
        assert client.save(kept, expect_version=1, token="draw-1").version == 2
        assert client.complete(lock_key, completed.operation_id) is True
        wait_until(lambda: client.stats().deferred_rollbacks == 0)
        assert [item.operation_id for item in client.pending(lock_key).items] == [kept.operation_id]
