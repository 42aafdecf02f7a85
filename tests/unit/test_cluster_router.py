"""drawstated.redis.cluster.ClusterRouter with fake node pipelines: which node each command reaches, and why.

Routing decides whether a draw's script runs on the node that holds its keys; a redirect followed
wrongly, or a slot table learnt wrongly, sends writes to a node that refuses them or loops. Here each
master's pipeline only records what it was given and the test answers it (a reply, MOVED, ASK, a
lost connection), and CLUSTER SLOTS comes from a fake connection in the shape Redis sends it. The
integration tests run the router against a real redis-server cluster.
"""

from __future__ import annotations

import asyncio
from binascii import crc_hqx
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import pytest
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError

from drawstated.redis import cluster, errors
from drawstated.redis.cluster import MAX_REDIRECTS, SLOTS, ClusterRouter
from drawstated.redis.pipeline import Wait
from drawstated.redis.resp import Endpoint

#: A bound on waiting for a future the code under test must settle; never reached when it works.
SETTLE_S = 2.0

# The first master by name owns the middle of the key space, so "the first master" and "whoever owns
# slot 0" are different nodes.
FIRST, SECOND, THIRD = "127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"
OWNERS = {FIRST: range(5461, 10923), SECOND: range(5461), THIRD: range(10923, SLOTS)}
SEED = ("127.0.0.1", 7000)


def node(name: str, node_id: bytes) -> list[Any]:
    host, port = name.rsplit(":", 1)
    return [host.encode(), int(port), node_id]


#: CLUSTER SLOTS as Redis answers it: [first, last, master, replica...]; SECOND owns two ranges.
TABLE: list[Any] = [
    [0, 2000, node(SECOND, b"b" * 40), node("127.0.0.1:7101", b"e" * 40)],
    [2001, 5460, node(SECOND, b"b" * 40)],
    [5461, 10922, node(FIRST, b"a" * 40), node("127.0.0.1:7100", b"d" * 40)],
    [10923, 16383, node(THIRD, b"c" * 40)],
]


class Sent(NamedTuple):
    command: tuple[Any, ...]
    wait: Any
    future: asyncio.Future[Any]


class FakePipeline:
    """One master's pipeline: records each submitted command; the test settles its future."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.sent: list[Sent] = []
        self.closed = False

    def submit(self, *command: Any, wait: Any = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(Sent(command, wait, future))
        return future

    @property
    def commands(self) -> list[tuple[Any, ...]]:
        return [sent.command for sent in self.sent]

    async def close(self) -> None:
        self.closed = True


class FakeSlotsConnection:
    def __init__(self, reply: Any) -> None:
        self._reply = reply

    async def call(self, *command: Any) -> Any:
        assert command == ("CLUSTER", "SLOTS")
        if isinstance(self._reply, BaseException):
            raise self._reply
        return self._reply

    def close(self) -> None:
        return None


class FakeCluster:
    """Stands in for resp.connect during refreshes: each address answers CLUSTER SLOTS as told."""

    def __init__(self) -> None:
        #: What CLUSTER SLOTS returns, per "host:port"; an exception is raised instead (connect's or
        #: the reply's, by its type). Addresses not listed answer `table`.
        self.answers: dict[str, Any] = {}
        self.table: list[Any] = TABLE
        self.calls: list[str] = []
        self.endpoints: list[Endpoint] = []
        #: Set to hold refreshes until it is set.
        self.gate: asyncio.Event | None = None

    async def __call__(self, endpoint: Endpoint, *, connect_timeout_s: float, stall_timeout_s: float) -> Any:
        name = f"{endpoint.host}:{endpoint.port}"
        self.calls.append(name)
        self.endpoints.append(endpoint)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.get(name, self.table)
        if isinstance(answer, RedisConnectionError):
            raise answer
        return FakeSlotsConnection(answer)


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(cluster, "connect", fake)
    return fake


@pytest.fixture
def nodes() -> dict[str, FakePipeline]:
    return {}


def make_router(nodes: dict[str, FakePipeline], seeds: list[tuple[str, int]]) -> ClusterRouter:
    def make_pipeline(endpoint: Endpoint) -> Any:
        pipeline = nodes[f"{endpoint.host}:{endpoint.port}"] = FakePipeline(endpoint)
        return pipeline

    template = Endpoint(host="template", port=1, username="app", password="s3cret")
    return ClusterRouter(seeds, template, make_pipeline, connect_timeout_s=1.0, stall_timeout_s=1.0)


@pytest.fixture
async def router(fake_cluster: FakeCluster, nodes: dict[str, FakePipeline]) -> AsyncIterator[ClusterRouter]:
    routed = make_router(nodes, [SEED])
    await routed.refresh()
    yield routed
    await routed.close()


async def next_tick() -> None:
    """Let the callbacks already scheduled run (reply callbacks are scheduled with call_soon)."""
    tick = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(tick.set_result, None)
    await tick


def key_owned_by(name: str, prefix: str = "k") -> str:
    """A key whose slot `name` owns."""
    return next(f"{prefix}{i}" for i in range(100_000) if key_slot(f"{prefix}{i}".encode()) in OWNERS[name])


def owner(key: str) -> str:
    slot = key_slot(key.encode())
    return next(name for name, slots in OWNERS.items() if slot in slots)


async def settle(sent: Sent, reply: Any) -> None:
    """Answer one command a node was sent, and let the router react."""
    if isinstance(reply, BaseException):
        sent.future.set_exception(reply)
    else:
        sent.future.set_result(reply)
    await next_tick()


async def test_the_slot_table_is_learnt_from_cluster_slots_masters_only(
    router: ClusterRouter, fake_cluster: FakeCluster
) -> None:
    assert router.masters == [FIRST, SECOND, THIRD]  # replicas 7100 and 7101 are not masters
    assert await router.scan_node_count() == 3
    assert fake_cluster.calls == [f"{SEED[0]}:{SEED[1]}"]
    assert fake_cluster.endpoints[0].password == "s3cret"  # the template's credentials, the seed's address


async def test_keys_in_different_slots_reach_the_masters_that_own_them(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    second_key, third_key, first_key = (key_owned_by(name) for name in (SECOND, THIRD, FIRST))
    futures = [router.submit("GET", key) for key in (second_key, third_key, first_key)]
    assert nodes[SECOND].commands == [("GET", second_key)]
    assert nodes[THIRD].commands == [("GET", third_key)]
    assert nodes[FIRST].commands == [("GET", first_key)]
    assert nodes[THIRD].endpoint.port == 7002 and nodes[THIRD].endpoint.password == "s3cret"
    for name, value in ((SECOND, b"2"), (THIRD, b"3"), (FIRST, b"1")):
        await settle(nodes[name].sent[0], value)
    assert [f.result() for f in futures] == [b"2", b"3", b"1"]


async def test_a_key_in_the_second_range_of_a_master_reaches_it(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    key = next(f"k{i}" for i in range(100_000) if 2001 <= key_slot(f"k{i}".encode()) <= 5460)
    router.submit("GET", key)
    assert nodes[SECOND].commands == [("GET", key)]


def keys_in_slots(slots: set[int]) -> dict[int, str]:
    """A key for each of `slots` (found by hashing candidates: CRC16 spreads them evenly)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(slots):
        slot = key_slot(f"k{i}".encode())
        if slot in slots:
            found.setdefault(slot, f"k{i}")
        i += 1
    return found


async def test_the_first_and_last_slot_of_every_range_reach_the_ranges_master(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    edges = {int(bound) for first, last, *_ in TABLE for bound in (first, last)}
    for slot, key in sorted(keys_in_slots(edges).items()):
        router.submit("GET", key)
        expected = next(name for name, slots in OWNERS.items() if slot in slots)
        assert nodes[expected].commands[-1] == ("GET", key), slot


async def test_keys_sharing_a_hash_tag_reach_the_same_node(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    tag = "{user:42}"
    # Suffixes whose whole keys, hashed without the tag rule, would land on two different masters.
    by_raw_owner: dict[str, str] = {}
    for i in range(1000):
        raw_slot = crc_hqx(f"ds:{tag}:{i}".encode(), 0) % SLOTS
        by_raw_owner.setdefault(next(n for n, s in OWNERS.items() if raw_slot in s), f"ds:{tag}:{i}")
    keys = list(by_raw_owner.values())[:2]
    assert len(keys) == 2
    for key in keys:
        router.submit("HGET", key, "f")
    tag_owner = owner("user:42")
    assert nodes[tag_owner].commands == [("HGET", key, "f") for key in keys]
    assert all(not pipeline.sent for name, pipeline in nodes.items() if name != tag_owner)


async def test_evalsha_routes_by_its_first_key_not_by_its_sha_or_arguments(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    first_key, other_key = key_owned_by(THIRD), key_owned_by(SECOND)
    router.submit("EVALSHA", "f" * 40, 2, first_key, other_key, "arg")
    router.submit(b"evalsha", b"f" * 40, b"1", first_key.encode(), b"x")
    assert nodes[THIRD].commands == [
        ("EVALSHA", "f" * 40, 2, first_key, other_key, "arg"),
        (b"evalsha", b"f" * 40, b"1", first_key.encode(), b"x"),
    ]
    assert SECOND not in nodes


async def test_keyless_commands_go_to_the_first_master(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    commands: list[tuple[Any, ...]] = [
        ("PING",),
        ("SCRIPT", "EXISTS", "f" * 40),
        ("WAIT", 0, 100),
        ("EVALSHA", "f" * 40, 0, "x"),
    ]
    # Were an argument taken for a key, each would go to another master: the test would notice.
    assert all(owner(str(arg)) != FIRST for command in commands for arg in command[1:2] + command[3:4])
    for command in commands:
        router.submit(*command)
    assert nodes[FIRST].commands == commands
    assert set(nodes) == {FIRST}


async def test_a_command_before_any_topology_waits_for_the_slot_table_then_reaches_its_node(
    fake_cluster: FakeCluster, nodes: dict[str, FakePipeline]
) -> None:
    routed = make_router(nodes, [SEED])
    key = key_owned_by(THIRD)
    future = routed.submit("GET", key)
    assert nodes == {}
    await routed.refresh()
    await next_tick()
    assert nodes[THIRD].commands == [("GET", key)]
    await settle(nodes[THIRD].sent[0], b"v")
    assert future.result() == b"v"
    await routed.close()


async def test_moved_reroutes_to_the_target_updates_the_slot_and_refreshes(
    router: ClusterRouter, nodes: dict[str, FakePipeline], fake_cluster: FakeCluster
) -> None:
    key = key_owned_by(SECOND)
    slot = key_slot(key.encode())
    fake_cluster.gate = asyncio.Event()  # hold the refresh: only MOVED itself can move the slot
    future = router.submit("GET", key)
    await settle(nodes[SECOND].sent[0], errors.MovedError(f"MOVED {slot} {THIRD}"))
    assert nodes[THIRD].commands == [("GET", key)]
    again = router.submit("GET", key)
    assert nodes[THIRD].commands == [("GET", key), ("GET", key)]  # straight to the new owner
    assert nodes[SECOND].commands == [("GET", key)]
    await next_tick()
    assert len(fake_cluster.calls) == 2  # a refresh started: other slots may have moved too
    await settle(nodes[THIRD].sent[0], b"v")
    await settle(nodes[THIRD].sent[1], b"w")
    assert (future.result(), again.result()) == (b"v", b"w")
    fake_cluster.gate.set()
    await router.refresh()


async def test_moved_to_a_node_not_yet_known_opens_a_pipeline_for_it(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    key = key_owned_by(FIRST)
    future = router.submit("SET", key, 1)
    await settle(nodes[FIRST].sent[0], errors.MovedError(f"MOVED {key_slot(key.encode())} 127.0.0.1:7009"))
    assert nodes["127.0.0.1:7009"].commands == [("SET", key, 1)]
    await settle(nodes["127.0.0.1:7009"].sent[0], b"OK")
    assert future.result() == b"OK"


async def test_ask_sends_asking_then_the_command_to_the_target_and_leaves_the_slot_alone(
    router: ClusterRouter, nodes: dict[str, FakePipeline], fake_cluster: FakeCluster
) -> None:
    key = key_owned_by(SECOND)
    future = router.submit("EVALSHA", "a" * 40, 1, key, "arg")
    await settle(nodes[SECOND].sent[0], errors.AskError(f"ASK {key_slot(key.encode())} {THIRD}"))
    assert nodes[THIRD].commands == [("ASKING",), ("EVALSHA", "a" * 40, 1, key, "arg")]
    await settle(nodes[THIRD].sent[0], b"OK")
    await settle(nodes[THIRD].sent[1], 1)
    assert future.result() == 1
    router.submit("GET", key)
    assert nodes[SECOND].commands[-1] == ("GET", key)  # the slot still belongs to SECOND
    await next_tick()
    assert len(fake_cluster.calls) == 1  # ASK is one command's detour: no refresh


async def test_a_redirect_keeps_the_commands_wait(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    key = key_owned_by(SECOND)
    wait = Wait(1, 100)
    router.submit("SET", key, 1, wait=wait)
    await settle(nodes[SECOND].sent[0], errors.MovedError(f"MOVED {key_slot(key.encode())} {THIRD}"))
    assert nodes[THIRD].sent[0].wait is wait


@pytest.mark.parametrize("code", ["MOVED", "ASK"])
async def test_after_max_redirects_the_last_redirect_is_returned_to_the_caller(
    router: ClusterRouter, nodes: dict[str, FakePipeline], fake_cluster: FakeCluster, code: str
) -> None:
    key = key_owned_by(SECOND)
    slot = key_slot(key.encode())
    fake_cluster.gate = asyncio.Event()  # refreshes stay pending: only the redirects route
    future = router.submit("GET", key)
    at, last = SECOND, None
    for hop in range(MAX_REDIRECTS + 1):
        target = THIRD if hop % 2 == 0 else FIRST
        last = errors.parse_error(f"{code} {slot} {target}")
        assert isinstance(last, errors.Redirect)
        assert nodes[at].sent[-1].command == ("GET", key)
        await settle(nodes[at].sent[-1], last)
        at = target
    assert future.exception() is last
    asked = [c for p in nodes.values() for c in p.commands if c == ("GET", key)]
    assert len(asked) == MAX_REDIRECTS + 1
    fake_cluster.gate.set()


async def test_a_lost_connection_to_a_node_refreshes_the_table_and_is_returned(
    router: ClusterRouter, nodes: dict[str, FakePipeline], fake_cluster: FakeCluster
) -> None:
    key = key_owned_by(THIRD)
    future = router.submit("GET", key)
    lost = RedisConnectionError("connection to redis lost: closed by server")
    await settle(nodes[THIRD].sent[0], lost)
    assert future.exception() is lost
    await next_tick()  # the refresh task's first step: it connects
    assert len(fake_cluster.calls) == 2
    assert fake_cluster.calls[1] in {FIRST, SECOND, THIRD}  # a known master is asked first


async def test_an_ordinary_error_reply_is_returned_without_a_refresh(
    router: ClusterRouter, nodes: dict[str, FakePipeline], fake_cluster: FakeCluster
) -> None:
    future = router.submit("HGET", key_owned_by(FIRST), "f")
    wrongtype = errors.ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value")
    await settle(nodes[FIRST].sent[0], wrongtype)
    assert future.exception() is wrongtype
    await next_tick()
    assert len(fake_cluster.calls) == 1


async def test_submit_to_reaches_the_master_at_that_index(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    for index in range(3):
        router.submit_to(index, "SCAN", 0, "MATCH", "ds:*")
    for index, name in enumerate(router.masters):
        assert nodes[name].commands == [("SCAN", 0, "MATCH", "ds:*")], (index, name)


async def test_cluster_slots_comes_from_the_first_seed_that_answers(
    fake_cluster: FakeCluster, nodes: dict[str, FakePipeline]
) -> None:
    fake_cluster.answers["127.0.0.1:6990"] = RedisConnectionError("cannot connect: refused")
    fake_cluster.answers["127.0.0.1:6991"] = errors.ReplyError(
        "ERR This instance has cluster support disabled"
    )
    fake_cluster.answers["127.0.0.1:6992"] = [[0, 16383, node(THIRD, b"c" * 40)]]
    seeds = [("127.0.0.1", 6990), ("127.0.0.1", 6991), ("127.0.0.1", 6992), ("127.0.0.1", 6993)]
    routed = make_router(nodes, seeds)
    await routed.refresh()
    assert fake_cluster.calls == ["127.0.0.1:6990", "127.0.0.1:6991", "127.0.0.1:6992"]
    assert routed.masters == [THIRD]
    routed.submit("GET", key_owned_by(SECOND))
    assert set(nodes) == {THIRD}
    await routed.close()


async def test_a_refresh_asks_the_known_masters_before_the_seeds(
    fake_cluster: FakeCluster, nodes: dict[str, FakePipeline]
) -> None:
    routed = make_router(nodes, [("127.0.0.1", 6990)])  # a seed that is no master
    await routed.refresh()
    fake_cluster.answers[FIRST] = RedisConnectionError("refused")  # the first master went away
    await routed.refresh()
    assert fake_cluster.calls == ["127.0.0.1:6990", FIRST, SECOND]
    await routed.close()


async def test_no_seed_answering_raises_connection_error_naming_each(
    fake_cluster: FakeCluster, nodes: dict[str, FakePipeline]
) -> None:
    fake_cluster.answers["127.0.0.1:6990"] = RedisConnectionError("refused")
    fake_cluster.answers["127.0.0.1:6991"] = errors.LoadingError("LOADING Redis is loading the dataset")
    routed = make_router(nodes, [("127.0.0.1", 6990), ("127.0.0.1", 6991)])
    with pytest.raises(RedisConnectionError) as raised:
        await routed.refresh()
    message = str(raised.value)
    assert "127.0.0.1:6990: refused" in message
    assert "127.0.0.1:6991: LOADING" in message
    assert routed.masters == []
    await routed.close()


async def test_a_command_fails_when_no_node_answers_cluster_slots(
    fake_cluster: FakeCluster, nodes: dict[str, FakePipeline]
) -> None:
    fake_cluster.answers["127.0.0.1:6990"] = RedisConnectionError("refused")
    routed = make_router(nodes, [("127.0.0.1", 6990)])
    future = routed.submit("GET", "k")
    with pytest.raises(RedisConnectionError, match="no cluster node answered"):
        await asyncio.wait_for(future, SETTLE_S)
    assert nodes == {}
    await routed.close()


async def test_close_closes_every_node_pipeline(
    router: ClusterRouter, nodes: dict[str, FakePipeline]
) -> None:
    for name in (FIRST, SECOND, THIRD):
        router.submit("GET", key_owned_by(name))
    await router.close()
    assert len(nodes) == 3 and all(pipeline.closed for pipeline in nodes.values())
