"""How many commands Redis runs for each op: on one server one each, except a refunding rollback's two.

Counted exactly with MONITOR: a probe connection sends `ECHO <marker>` before and after each op,
and the commands between the two markers that came from a client (not from inside a script,
which MONITOR reports as `lua`) are the op's. On a Cluster every master is monitored and the
counts summed. The daemon runs on its own Redis with its sweeper out of the way (one sweep at
start, then an hour's interval), so nothing else talks to Redis meanwhile.
`python -m pytest -s` prints the tables docs/scaling.md quotes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from drawstate import Client, DrawState
from drawstated.redis.scripts import load_all
from drawstated.storage.store import READ_CHUNK, SCRIPT_LOOK_MAX
from testbed.redis_proc import RedisProcess
from testbed.topology import ClusterTopology
from tests.support.shared_redis import CLUSTER_PREFIX
from tests.support.waiting import wait_until

#: Sweeps only at start: a sweep in the middle of a count would be counted.
SWEEP_INTERVAL_S = 3600.0
#: The commands Redis runs per op on standalone (docs/scaling.md's table).
EXPECTED = {
    "save (first)": ["EVALSHA save"],
    "save (next)": ["EVALSHA save"],
    "load by id": ["GET"],
    "load newest": ["EVALSHA newest"],
    "pending page, one lock key": ["EVALSHA page"],
    "complete": ["EVALSHA close"],
    "rollback": ["EVALSHA close", "EVALSHA settle"],  # "you pay", once close.lua's reply is in hand
    "rollback, refund by the stream": ["EVALSHA close"],  # nobody is told to pay: decided in close.lua
    "load newest (newest expired: the walk)": ["EVALSHA newest", "EVALSHA page"],
}
#: The same on Cluster (sorted: the masters are read one after another). Reads name every key in
#: its own command (a GET per state, a prune.lua per member whose state is gone), and the outcome
#: event goes to the stream's own slot after the ending: outbox.lua, XADD, published.lua.
EXPECTED_CLUSTER = {
    "save (first)": ["EVALSHA save"],
    "save (next)": ["EVALSHA save"],
    "load by id": ["GET"],
    "load newest": ["EVALSHA prune"] * 2 + ["GET"] * 6 + ["ZREVRANGE"],
    "pending page, one lock key": ["GET"] * 4 + ["ZRANGE"],
    "complete": ["EVALSHA close", "EVALSHA outbox", "EVALSHA published", "XADD"],
    "rollback": ["EVALSHA close", "EVALSHA outbox", "EVALSHA published", "EVALSHA settle", "XADD"],
    "rollback, refund by the stream": ["EVALSHA close", "EVALSHA outbox", "EVALSHA published", "XADD"],
    "load newest (newest expired: the walk)": ["GET"] * 6 + ["ZRANGE", "ZREVRANGE"],
}
_SCRIPT_NAMES = {script.sha: name for name, script in load_all().items()}


class _Node:
    """One server's MONITOR connection and a probe connection that sends the markers."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self.monitored, self.probe = connect(), connect()
        self.probe.ping()  # its connection's own handshake comes before any marker
        self.monitor = self.monitored.monitor()
        self.monitor.__enter__()

    def commands_between(self, begin: str, end: str) -> Iterator[str]:
        """Clients' commands between the markers; MONITOR reports in execution order."""
        inside = False
        while True:
            entry = self.monitor.next_command()
            command = entry["command"]
            if command == f"ECHO {begin}":
                inside = True
            elif command == f"ECHO {end}":
                return
            elif inside and entry["client_type"] != "lua":
                words = command.split(" ", 2)
                name = words[0].upper()
                yield f"EVALSHA {_SCRIPT_NAMES.get(words[1], words[1])}" if name == "EVALSHA" else name

    def close(self) -> None:
        self.monitor.__exit__(None, None, None)
        self.probe.close()
        self.monitored.close()


class CommandLog:
    """The commands clients made Redis run between two markers, on every server given."""

    def __init__(self, servers: list[Callable[[], redis.Redis]]) -> None:
        self._nodes = [_Node(connect) for connect in servers]
        self._markers = itertools.count()

    def close(self) -> None:
        for node in self._nodes:
            node.close()

    @contextmanager
    def around(self) -> Iterator[list[str]]:
        """The commands run inside the block (EVALSHA named by its script), once it has ended."""
        n = next(self._markers)
        begin, end = f"round-trips-begin-{n}", f"round-trips-end-{n}"
        seen: list[str] = []
        for node in self._nodes:
            node.probe.echo(begin)
        yield seen
        for node in self._nodes:
            node.probe.echo(end)
            seen += node.commands_between(begin, end)


Counted = tuple[Client, CommandLog, Any]


@contextmanager
def _counting(daemon: Any, servers: list[Callable[[], redis.Redis]], rdb: Any) -> Iterator[Counted]:
    with daemon.client(timeout=5.0) as client:
        wait_until(lambda: client.stats().sweeps >= 1)  # the sweep at start is over
        log = CommandLog(servers)
        try:
            yield client, log, rdb
        finally:
            log.close()
            rdb.close()


@pytest.fixture
def counted(
    own_redis: RedisProcess, make_config: Callable[..., Any], start_daemon: Callable[..., Any]
) -> Iterator[Counted]:
    daemon = start_daemon(make_config(redis_url=own_redis.url, sweep_interval_s=SWEEP_INTERVAL_S))
    with _counting(daemon, [own_redis.client], own_redis.client()) as counted:
        yield counted


@pytest.fixture
def counted_on_cluster(
    make_config: Callable[..., Any], start_daemon: Callable[..., Any]
) -> Iterator[Counted]:
    cluster = ClusterTopology()
    try:
        seeds = ",".join(cluster.addresses)
        config = make_config(redis_url=CLUSTER_PREFIX + seeds, sweep_interval_s=SWEEP_INTERVAL_S)
        daemon = start_daemon(config)
        masters = [master.client for master in cluster.masters()]
        with _counting(daemon, masters, cluster.client()) as counted:
            yield counted
        daemon.stop()
    finally:
        cluster.cleanup()


def _state_key(lock_key: str, operation_id: str) -> str:
    return f"lottery:state:{{{lock_key}}}:{operation_id}"


def _print_table(topology: str, counts: dict[str, list[str]]) -> None:
    print(f"\nRedis commands per op ({topology})")
    print(f"{'op':<42} {'commands':>8}  what")
    for op, names in counts.items():
        print(f"{op:<42} {len(names):>8}  {', '.join(names)}")


def test_each_op_is_one_redis_round_trip_on_standalone_but_a_refunding_rollback_two(
    counted: Counted, new_state: Callable[..., DrawState]
) -> None:
    counts = _each_op(counted, new_state)
    _print_table("standalone", counts)
    assert counts == EXPECTED


def test_on_cluster_reads_take_a_command_per_key_and_endings_write_their_event_apart(
    counted_on_cluster: Counted, new_state: Callable[..., DrawState]
) -> None:
    counts = _each_op(counted_on_cluster, new_state)
    _print_table("cluster, summed over the masters", counts)
    assert {op: sorted(names) for op, names in counts.items()} == EXPECTED_CLUSTER


def _each_op(counted: Counted, new_state: Callable[..., DrawState]) -> dict[str, list[str]]:
    """Every op once, each checked for what it returns; the commands each made Redis run."""
    client, log, rdb = counted
    lock_key = "player:trips"
    counts: dict[str, list[str]] = {}

    # An older operation past its lifetime, three live ones, then two whose state keys are gone.
    expired = new_state(lock_key=lock_key)
    client.save(expired, ttl_s=1)
    live = [new_state(lock_key=lock_key) for _ in range(3)]
    with log.around() as counts["save (first)"]:
        first = client.save(live[0])
    for state in live[1:]:
        client.save(state)
    live[2].completed_count, live[2].results = 1, [7]
    with log.around() as counts["save (next)"]:
        second = client.save(live[2], expect_version=1)
    gone = [new_state(lock_key=lock_key) for _ in range(2)]
    for state in gone:  # the newest two
        client.save(state)
        rdb.delete(_state_key(lock_key, state.operation_id))  # as if its key's TTL had ended
    assert (first.version, second.version) == (1, 2)
    wait_until(lambda: client.load(lock_key, expired.operation_id) is None, timeout=10)

    with log.around() as counts["load by id"]:
        by_id = client.load(lock_key, live[0].operation_id)
    assert by_id is not None and by_id.to_dict() == {**live[0].to_dict(), "version": 1}

    with log.around() as counts["load newest"]:
        newest = client.load(lock_key)
    assert newest is not None and newest.to_dict() == {**live[2].to_dict(), "version": 2}
    index = f"lottery:ops:{{{lock_key}}}"
    assert [rdb.zscore(index, state.operation_id) for state in gone] == [None, None]  # pruned

    with log.around() as counts["pending page, one lock key"]:
        page = client.pending(lock_key)
    assert [item.operation_id for item in page.items] == sorted(state.operation_id for state in live)
    assert page.cursor is None

    with log.around() as counts["complete"]:
        assert client.complete(lock_key, live[0].operation_id) is True

    with log.around() as counts["rollback"]:
        refund = client.rollback(lock_key, live[1].operation_id, reason="round trips", token="trip-1")
    assert refund.final and refund.existed and refund.state is not None
    assert refund.state.operation_id == live[1].operation_id

    delegated = new_state(lock_key=lock_key)
    client.save(delegated)
    with log.around() as counts["rollback, refund by the stream"]:
        refund = client.rollback(lock_key, delegated.operation_id, refund_by="stream", token="trip-2")
    assert not refund.final and refund.existed and refund.state is not None
    assert refund.state.operation_id == delegated.operation_id

    # The newest past its lifetime: the daemon judges expiry, and walks the others (rare).
    newer = new_state(lock_key=lock_key)
    client.save(newer, ttl_s=1)
    wait_until(lambda: client.load(lock_key, newer.operation_id) is None, timeout=10)
    with log.around() as counts["load newest (newest expired: the walk)"]:
        fallback = client.load(lock_key)
    assert fallback is not None and fallback.operation_id == live[2].operation_id
    return counts


def test_a_pending_page_of_one_lock_key_is_in_byte_order_of_operation_ids(
    counted: Counted, new_state: Callable[..., DrawState]
) -> None:
    client, log, rdb = counted
    lock_key = "player:order"
    # Byte order, not a locale's: '-' < digits < upper case < '_' < lower case.
    ids = ["alpha-1", "_mid", "Zeta-1", "0num", "-dash", "Alpha-2", "beta"]
    for operation_id in ids:
        client.save(new_state(lock_key=lock_key, operation_id=operation_id))
    rdb.delete(_state_key(lock_key, "Zeta-1"))
    expected = sorted(i for i in ids if i != "Zeta-1")
    with log.around() as commands:
        first = client.pending(lock_key, limit=3)
    assert len(commands) == 1
    assert [item.operation_id for item in first.items] == expected[:3]
    assert first.cursor == expected[2]
    pages = [item.operation_id for item in client.iter_pending(lock_key, limit=2)]
    assert pages == expected
    assert rdb.zscore(f"lottery:ops:{{{lock_key}}}", "Zeta-1") is None  # pruned on the way


def test_load_newest_and_pending_walk_past_more_missing_states_than_one_script_looks_at(
    counted: Counted, new_state: Callable[..., DrawState]
) -> None:
    client, _, rdb = counted
    lock_key = "player:sparse"
    kept = [new_state(lock_key=lock_key, operation_id=f"z-kept-{i}") for i in range(3)]
    for state in kept:
        client.save(state)
    # Index members newer than every kept one, and before them in byte order, with no state.
    index = f"lottery:ops:{{{lock_key}}}"
    newest_score = max(score for _, score in rdb.zrange(index, 0, -1, withscores=True))
    missing = SCRIPT_LOOK_MAX + READ_CHUNK + 1
    rdb.zadd(index, {f"a-gone-{i:04d}": newest_score + 1 + i for i in range(missing)})

    assert [item.operation_id for item in client.iter_pending(lock_key, limit=2)] == [
        state.operation_id for state in kept
    ]
    assert rdb.zcard(index) == len(kept)  # every missing member dropped on the way

    rdb.zadd(index, {f"a-gone-{i:04d}": newest_score + 1 + i for i in range(missing)})
    loaded = client.load(lock_key)
    assert loaded is not None and loaded.operation_id == kept[-1].operation_id
    assert rdb.zcard(index) == len(kept)
