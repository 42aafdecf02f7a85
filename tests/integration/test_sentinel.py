"""Sentinel: the daemon follows a failover, and replicated saves that were acknowledged survive it.

A master can also be demoted while alive (a manual failover): its open
connections then answer READONLY, and the daemon must retire them and ask
Sentinel anew, or every save keeps landing on the replica until its deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from drawstate import Client
from testbed.topology import SentinelTopology
from tests.support.waiting import wait_until

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLIENTS = 4
#: The request deadline of the demotion test: every save after the demotion must succeed within it.
DEMOTION_DEADLINE_S = 2.0
#: Saves sent at once before the demotion, so the daemon holds several connections to the master.
DEMOTION_BURST = 16
#: Saves after the demotion, each a separate request with its own deadline.
SAVES_AFTER_DEMOTION = 20


@pytest.fixture(params=[1, 2], ids=["1-replica", "2-replicas"])
def sentinel_topology(request):
    # With one replica, replicated saves wait until the killed master is back as a replica;
    # with two, the surviving replica acknowledges as soon as the failover is done.
    topology = SentinelTopology(replicas=request.param)
    yield topology
    topology.cleanup()


def test_daemon_serves_through_sentinel_and_reports_replicas(sentinel_topology, make_config, start_daemon,
                                                              new_state):  # fmt: skip
    daemon = start_daemon(make_config(redis_sentinels=sentinel_topology.addresses,
                                      sentinel_master=sentinel_topology.name))  # fmt: skip
    with daemon.client() as client:
        state = new_state()
        result = client.save(state, durability="replicated")
        assert result.version == 1
        # WAIT returns once min_replicas (1) acknowledged: a second replica may or may not be counted.
        assert 1 <= result.replicas <= len(sentinel_topology.replicas)
        assert client.load(state.lock_key).operation_id == state.operation_id


def test_killed_master_fails_over_without_losing_an_acknowledged_replicated_save(
    sentinel_topology, make_config, start_daemon
):
    topology = sentinel_topology
    daemon = start_daemon(make_config(redis_sentinels=topology.addresses, sentinel_master=topology.name,
                                      durability="replicated", default_deadline_ms=2000))  # fmt: skip
    socket_path = str(daemon.config.socket_path)
    stop_file = daemon.config.socket_path.parent / "stop-savers"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO_ROOT, f"{REPO_ROOT}/client"])}
    savers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.saver",
                socket_path,
                f"failover:{i}",
                "90",
                "replicated",
                str(stop_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        for i in range(CLIENTS)
    ]
    with Client(socket_path) as probe:
        wait_until(lambda: probe.stats().requests.get("save", {}).get("ok", 0) > 200)
        old_master = topology.master
        old_master.kill()  # kill -9, with saves in flight
        killed_at = time.monotonic()
        wait_until(lambda: topology.current_master_port() != old_master.port, timeout=15)
        old_master.start()  # comes back; Sentinel makes it a replica of the new master
        saves_before = probe.stats().requests["save"].get("ok", 0)
        wait_until(lambda: probe.stats().requests["save"].get("ok", 0) > saves_before + 100, timeout=60)
        recovered_after = time.monotonic() - killed_at
    stop_file.touch()

    reports = [json.loads(saver.communicate(timeout=60)[0]) for saver in savers]
    new_master = topology.node(topology.current_master_port())
    with new_master.client() as rdb:
        for report in reports:
            assert report["fatal"] == [], report  # clients saw only retryable errors
            key = f"lottery:state:{{{report['lock_key']}}}:{report['operation_id']}"
            stored = json.loads(rdb.get(key))
            assert stored["completed_count"] >= report["acked"] > 0  # no acknowledged save lost
    window = max(report["longest_gap_s"] for report in reports)
    print(f"failover: longest client-visible gap {window:.2f} s; saves flowing again {recovered_after:.2f} s "
          f"after the kill; errors {[r['errors'] for r in reports]}")  # fmt: skip
    assert window < 15


def _daemon_connections(node) -> int:
    """Connections on `node` that ran a script: the daemon's (sentinels and replication never do)."""
    with node.client() as client:
        return sum(1 for c in client.client_list() if c["cmd"] == "evalsha" and "M" not in c["flags"])


def test_connections_to_a_master_demoted_while_alive_are_retired_and_saves_keep_their_deadline(
    make_config, start_daemon, new_state
):
    topology = SentinelTopology(replicas=1)
    try:
        old, promoted = topology.master, topology.replicas[0]
        daemon = start_daemon(make_config(redis_sentinels=topology.addresses, sentinel_master=topology.name,
                                          default_deadline_ms=int(DEMOTION_DEADLINE_S * 1000)))  # fmt: skip
        with daemon.client(timeout=DEMOTION_DEADLINE_S) as client:
            states = [new_state(lock_key=f"demote:{i}") for i in range(DEMOTION_BURST)]

            def save_alone(state):  # a client per thread: the saves are in flight together
                with Client(daemon.config.socket_path, timeout=DEMOTION_DEADLINE_S) as own:
                    return own.save(state).version

            with ThreadPoolExecutor(DEMOTION_BURST) as pool:
                assert list(pool.map(save_alone, states)) == [1] * DEMOTION_BURST
            assert _daemon_connections(old) >= 1

            with topology.sentinels[0].client() as sentinel:
                sentinel.execute_command("SENTINEL", "FAILOVER", topology.name)
            wait_until(lambda: all(s.client().sentinel_get_master_addr_by_name(topology.name)[1]
                                   == promoted.port for s in topology.sentinels), timeout=20)  # fmt: skip
            # Sentinel would demote the old master itself seconds later (+convert-to-slave): do it now,
            # so the daemon's open connections to it answer READONLY.
            with old.client() as demoted:
                demoted.replicaof("127.0.0.1", promoted.port)
                assert demoted.info("replication")["role"] == "slave"
            assert _daemon_connections(old) >= 1  # still open: REPLICAOF keeps normal clients

            for i in range(SAVES_AFTER_DEMOTION):
                state = new_state(lock_key=f"after:{i}")
                started = time.monotonic()
                assert client.save(state).version == 1  # within DEMOTION_DEADLINE_S, or it raises
                assert time.monotonic() - started < DEMOTION_DEADLINE_S
            wait_until(lambda: _daemon_connections(old) == 0)  # each one that answered READONLY is gone
        with promoted.client() as rdb:
            assert len(rdb.keys("lottery:state:{after:*")) == SAVES_AFTER_DEMOTION
    finally:
        topology.cleanup()
