"""Saves that send only the draws they add (protocol.md §7.2), with a real daemon and Redis.

What must hold: an append stores exactly what the whole state's save stores; the daemon answers
base_unknown whenever it does not hold the state named (a restart, another save between, a wrong
base), and the clients then send the whole state within the same call; a client never sends an
append for a state whose recorded draws or fixed fields changed, so those saves are refused as
before. The states start with PREFILLED draws, enough to be sent as appends (appends.py).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drawstate import Client, DrawState, MultiDraw, OperationClosed, Prize, StaleState, ops
from drawstate.aio import AsyncClient, AsyncMultiDraw
from drawstate.appends import MIN_ITEMS_TO_APPEND, items
from drawstate.connection import Connection
from drawstate.limits import MAX_FRAME_BYTES
from drawstate.model import DrawError
from drawstated import keys
from drawstated.codec import EXPIRES_FIELD, TOKEN_FIELD
from tests.support.daemon import DaemonProcess, DaemonThread
from tests.support.shared_redis import CLUSTER_PREFIX
from tests.support.waiting import wait_until

LOCK = "player:append"
#: Draws a test's state holds before its first save: past MIN_ITEMS_TO_APPEND with their prizes.
PREFILLED = MIN_ITEMS_TO_APPEND // 6 + 1


def fresh(operation_id: str, total: int = 500) -> DrawState:
    """An operation with PREFILLED draws granted, not saved yet."""
    state = DrawState(
        lock_key=LOCK,
        operation_id=operation_id,
        total_count=total,
        start_time=1_700_000_000,
        last_update_time=1_700_000_000,
        metadata={"user_id": "1001", "price_paid": "1600"},
    )
    return grant(state, PREFILLED)


def next_failure(state: DrawState, message: str = "rng timeout") -> DrawError:
    """The failure of the next draw: numbered after every draw made."""
    index = state.completed_count + len(state.errors) + 1
    return DrawError(index, message, 1_700_000_000 + index)


def grant(state: DrawState, n: int = 1) -> DrawState:
    """`state` after `n` more granted draws, each with its prize (changed in place, returned)."""
    for _ in range(n):
        state.completed_count += 1
        state.results.append(state.completed_count * 7)
        state.prize_results.append(Prize(f"p{state.completed_count}", "Gem", 0.125, state.completed_count))
        state.last_update_time += 1
    return state


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """How each save request the clients make carries its state: "append" or "state"."""
    kinds: list[str] = []
    real_save, real_append = ops.save, ops.save_append

    def save(*args: Any, **kwargs: Any) -> ops.Request:
        kinds.append("state")
        return real_save(*args, **kwargs)

    def save_append(*args: Any, **kwargs: Any) -> ops.Request:
        kinds.append("append")
        return real_append(*args, **kwargs)

    monkeypatch.setattr(ops, "save", save)
    monkeypatch.setattr(ops, "save_append", save_append)
    return kinds


def stored_text(rdb: Any, operation_id: str) -> dict[str, Any]:
    """The stored JSON, without what differs between two saves of one state (token, expiry)."""
    data = json.loads(rdb.get(keys.state_key("lottery", LOCK, operation_id)))
    data.pop(TOKEN_FIELD)
    data.pop(EXPIRES_FIELD)
    return data  # type: ignore[no-any-return]


def one_draw_appended(state: dict[str, Any], base: str) -> dict[str, Any]:
    """The `append` of one more range draw to `state` (a fresh one's dict), saved as `base`."""
    return {
        "lock_key": LOCK,
        "operation_id": state["operation_id"],
        "base": base,
        "completed_count": PREFILLED + 1,
        "last_update_time": state["last_update_time"] + 1,
        "results": [21],
    }


@pytest.fixture
def raw(daemon: DaemonThread) -> Iterator[Callable[[dict[str, Any]], dict[str, Any]]]:
    """Send one request as it is and return the daemon's reply."""
    conn = Connection(str(daemon.config.socket_path), None, MAX_FRAME_BYTES, time.monotonic() + 5)

    def send(request: dict[str, Any]) -> dict[str, Any]:
        return conn.round_trip(dict(request), time.monotonic() + 5)

    yield send
    conn.close()


def test_a_drawstate_saved_draw_by_draw_sends_only_its_new_draws_and_stores_the_whole_state(
    client: Client, rdb: Any, sent: list[str]
) -> None:
    state = fresh("20260101_000000_append01")
    versions = [client.save(grant(state)).version for _ in range(12)]
    assert versions == list(range(1, 13))
    assert sent == ["state"] + ["append"] * 11
    assert client.load(LOCK, state.operation_id) == DrawState(**{**_fields(state), "version": 12})
    # The same state saved whole, as another operation, is stored as the same text.
    twin = DrawState(**{**_fields(state), "operation_id": "20260101_000000_append02"})
    with Client(client.socket_path) as other:
        other.save(twin)
    expected = stored_text(rdb, twin.operation_id)
    expected["operation_id"] = state.operation_id
    actual = stored_text(rdb, state.operation_id)
    assert {**actual, "version": 0, "_digest": ""} == {**expected, "version": 0, "_digest": ""}
    assert actual["_digest"] == expected["_digest"]  # the digest does not cover the operation id


def _fields(state: DrawState) -> dict[str, Any]:
    return {name: getattr(state, name) for name in DrawState.__slots__}  # type: ignore[attr-defined]


def test_failed_draws_are_sent_as_they_are_added(client: Client, sent: list[str]) -> None:
    state = fresh("20260101_000000_append03")
    client.save(state)
    state.errors.append(next_failure(state))
    client.save(state)
    client.save(grant(state))
    assert sent == ["state", "append", "append"]
    loaded = client.load(LOCK, state.operation_id)
    assert loaded is not None
    assert (loaded.errors, loaded.results) == (state.errors, state.results)
    assert loaded.completed_count == PREFILLED + 1


def test_a_restarted_daemon_gets_the_whole_state_within_the_same_call(
    redis_url: str, make_config: Callable[..., Any], start_daemon: Any, sent: list[str]
) -> None:
    config = make_config(redis_url=redis_url)
    first = start_daemon(config)
    state = fresh("20260101_000000_append04")
    with Client(str(config.socket_path), timeout=5.0) as client:
        client.save(state)
        client.save(grant(state))
        first.stop()
        start_daemon(config)  # it remembers nothing
        assert client.save(grant(state)).version == 3
        assert client.save(grant(state)).version == 4
        assert client.load(LOCK, state.operation_id) == DrawState(**{**_fields(state), "version": 4})
    # the append after the restart, answered base_unknown, then the whole state; then appends again
    assert sent == ["state", "append", "append", "state", "append"]


def test_a_changed_recorded_draw_or_fixed_field_is_sent_whole_and_refused(
    client: Client, sent: list[str]
) -> None:
    state = fresh("20260101_000000_append05")
    client.save(state)
    state.prize_results[1] = Prize("p2", "Gem", 0.125, 999_999)  # a granted prize made dearer
    grant(state)
    with pytest.raises(StaleState, match="prize_results"):
        client.save(state)
    changed = grant(fresh("20260101_000000_append05"))
    changed.metadata["price_paid"] = "0"
    with pytest.raises(StaleState, match="metadata"):
        client.save(changed)
    failed = fresh("20260101_000000_append5b")
    failed.errors.append(next_failure(failed))
    client.save(failed)
    failed.errors[0] = DrawError(failed.errors[0].draw_index, "", 1)  # a failure's record rewritten
    with pytest.raises(StaleState, match="errors"):
        client.save(grant(failed))
    assert sent == ["state", "state", "state", "state", "state"]


def test_a_save_between_from_another_client_makes_the_next_append_a_whole_save(
    client: Client, daemon: DaemonThread, sent: list[str]
) -> None:
    state = fresh("20260101_000000_append06")
    client.save(state)
    with daemon.client(timeout=5.0) as other:  # its own memory of saves
        other.save(grant(state.copy()))  # version 2: the daemon now holds that one
    assert client.save(grant(grant(state.copy()))).version == 3  # base_unknown, then whole
    assert sent == ["state", "state", "append", "state"]


def test_an_append_to_an_operation_past_its_ttl_is_refused_as_expired(
    client: Client, sent: list[str]
) -> None:
    """The save script ends an operation whose time is up, however the save was sent: the draws an
    append carries are never stored past the TTL, and the caller is told the operation expired."""
    state = fresh("20260101_000000_append11")
    client.save(state, ttl_s=1)
    wait_until(lambda: client.load(LOCK, state.operation_id) is None, timeout=5)  # the sweeper is 30 s away
    with pytest.raises(OperationClosed) as caught:
        client.save(grant(state), ttl_s=1)
    assert caught.value.details["closed_by"] == "expire"
    assert sent == ["state", "append"]


def test_the_daemon_answers_appends_it_cannot_place_with_clear_codes(
    raw: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    state = fresh("20260101_000000_append07").to_dict()
    first = raw({"op": "save", "state": state, "token": "t1", "want_base": True})
    assert first["ok"] and len(first["base"]) == 64
    append = one_draw_appended(state, first["base"])

    def error(request: dict[str, Any]) -> tuple[str, str]:
        reply = raw({"op": "save", "token": "t2", **request})
        assert not reply["ok"], reply
        return reply["error"]["code"], reply["error"]["message"]

    assert error({"append": {**append, "base": "0" * 64}})[0] == "base_unknown"
    assert error({"append": {**append, "operation_id": "20260101_000000_other"}})[0] == "base_unknown"
    assert error({"append": append, "state": state}) == (
        "invalid_request",
        "a save carries state or append, not both",
    )
    assert error({"append": {**append, "version": 9}})[0] == "invalid_request"
    assert error({"append": {**append, "base": "XYZ"}})[0] == "invalid_request"
    assert error({"append": [1]})[0] == "invalid_request"
    assert error({"append": append, "want_base": 1})[0] == "invalid_request"
    code, message = error({"append": {**append, "results": [2**60]}})
    assert code == "draw_state_corrupted" and "results" in message
    assert error({"append": {**append, "completed_count": 1}})[0] == "draw_state_corrupted"
    without_counter = {name: value for name, value in append.items() if name != "last_update_time"}
    assert error({"append": without_counter})[0] == "draw_state_corrupted"  # as the whole state would be

    ok = raw({"op": "save", "token": "t3", "append": append, "want_base": True})
    assert (ok["ok"], ok["version"]) == (True, 2) and ok["base"] != first["base"]
    # Resent as it was (its reply lost): the daemon holds the state it made, not its base.
    again = raw({"op": "save", "token": "t3", "append": append, "want_base": True})
    assert again["error"]["code"] == "base_unknown"
    whole = {
        **state,
        "completed_count": PREFILLED + 1,
        "results": [*state["results"], 21],
        "last_update_time": append["last_update_time"],
    }
    replay = raw({"op": "save", "token": "t3", "state": whole, "want_base": True})
    assert (replay["ok"], replay["version"], "base" in replay) == (True, 2, False)  # a replay: no base
    plain = raw({"op": "save", "state": {**whole, "completed_count": PREFILLED + 2}, "token": "t4"})
    assert (plain["ok"], plain["version"], "base" in plain) == (True, 3, False)  # only when asked for


def test_the_asyncio_client_sends_appends_and_falls_back_the_same_way(
    redis_url: str, make_config: Callable[..., Any], start_daemon: Any, sent: list[str]
) -> None:
    config = make_config(redis_url=redis_url)
    first = start_daemon(config)
    state = fresh("20260101_000000_append08")

    async def scenario() -> list[int]:
        async with AsyncClient(str(config.socket_path), timeout=5.0) as client:
            versions = [(await client.save(state)).version, (await client.save(grant(state))).version]
            first.stop()
            start_daemon(config)
            versions.append((await client.save(grant(state))).version)
            loaded = await client.load(LOCK, state.operation_id)
            assert loaded == DrawState(**{**_fields(state), "version": 3})
            return versions

    assert asyncio.run(scenario()) == [1, 2, 3]
    assert sent == ["state", "append", "append", "state"]


def test_a_small_state_is_always_sent_whole_without_asking_for_a_base(
    client: Client, sent: list[str]
) -> None:
    small = DrawState(LOCK, "20260101_000000_append10", 20, start_time=1, last_update_time=1)
    requests = []
    while items(small) < MIN_ITEMS_TO_APPEND and small.completed_count < small.total_count:
        requests.append(
            client._bases.plan(grant(small), expect_version=None, ttl_s=None, token=None, durability=None)
        )
        client.save(small)
    assert sent == ["state"] * (2 * len(requests))  # each plan made above, and each save's own
    assert not any("want_base" in plan.request for plan in requests)
    assert client.load(LOCK, small.operation_id) == DrawState(**{**_fields(small), "version": len(requests)})


#: Draws of the multi-draws below: well past the state MIN_ITEMS_TO_APPEND makes appendable.
LONG_PULL = 60


def _prize(n: int) -> Prize:
    return Prize(f"p{n}", "Gem", 0.125, n)


def _sent_by_a_long_pull() -> list[str]:
    """What a LONG_PULL-draw multi-draw of prizes sends: whole until it weighs enough, then appends."""
    whole = -(-MIN_ITEMS_TO_APPEND // 5)  # prizes it takes (5 items each) for the first base
    return ["state"] * (1 + whole) + ["append"] * (LONG_PULL - whole)


def test_a_long_multidraw_sends_only_the_draws_it_adds(client: Client, sent: list[str]) -> None:
    draw = MultiDraw.start(client, LOCK, LONG_PULL, metadata={"user_id": "1001"})
    for n in range(1, LONG_PULL + 1):
        assert draw.record(_prize(n)) == n
    assert sent == _sent_by_a_long_pull()
    loaded = client.load(LOCK, draw.operation_id)
    assert loaded == draw.state and loaded.prize_results == [_prize(n) for n in range(1, LONG_PULL + 1)]
    assert draw.complete()


def test_a_long_asyncio_multidraw_sends_only_the_draws_it_adds(daemon: DaemonThread, sent: list[str]) -> None:
    async def scenario() -> DrawState | None:
        async with AsyncClient(str(daemon.config.socket_path), timeout=5.0) as client:
            draw = await AsyncMultiDraw.start(client, LOCK, LONG_PULL, metadata={"user_id": "1001"})
            for n in range(1, LONG_PULL + 1):
                assert await draw.record(_prize(n)) == n
            loaded = await client.load(LOCK, draw.operation_id)
            assert loaded == draw.state
            assert (await draw.complete()).completed_count == LONG_PULL
            return loaded

    loaded = asyncio.run(scenario())
    assert sent == _sent_by_a_long_pull()
    assert loaded is not None and loaded.prize_results == [_prize(n) for n in range(1, LONG_PULL + 1)]


#: Steps of the randomized run, and its seed (printed, so a failure can be replayed).
RANDOM_STEPS = 400
APPEND_SEED_ENV = "DRAWSTATE_APPEND_SEED"


def test_randomized_saves_store_exactly_what_each_game_was_told_saved(
    redis_url: str, sock_dir: Path, sent: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Two game clients save 6 large operations through a daemon process that is SIGKILLed and
    restarted and remembers little (--accepted-cache-bytes 20000), in random order: draws granted,
    draws failed, a recorded prize or the price rewritten, an older copy of a state saved from the
    other client. Whatever was sent (append, whole, whole after base_unknown), what Redis holds
    must be, after every step and at the end, the last state a save was answered ok for: no draw
    lost, none added, none changed."""
    seed = int(os.environ.get(APPEND_SEED_ENV, str(time.time_ns() % 10**6)))
    rng = random.Random(seed)
    socket_path = sock_dir / "r.sock"
    if redis_url.startswith(CLUSTER_PREFIX):
        target = ["--redis-cluster", redis_url.removeprefix(CLUSTER_PREFIX)]
    else:
        target = ["--redis-url", redis_url]
    args = [*target, "--data-dir", str(sock_dir / "r"), "--accepted-cache-bytes", "20000"]
    daemon = DaemonProcess(socket_path, args).start()
    counts = {
        "saves answered ok": 0,
        "saves refused stale_state": 0,
        "daemon SIGKILLed and restarted": 0,
        "requests sent as append": 0,
        "requests sent whole": 0,
        "appends answered base_unknown, then sent whole": 0,
    }
    truth: dict[str, DrawState] = {}  # per operation, the last state a save was answered ok for
    history: dict[str, list[DrawState]] = {}
    clients = [Client(str(socket_path), timeout=5.0), Client(str(socket_path), timeout=5.0)]

    def save(client: Client, state: DrawState) -> None:
        before = len(sent)
        try:
            client.save(state)
        finally:
            kinds = sent[before:]
            counts["requests sent as append"] += kinds.count("append")
            counts["requests sent whole"] += kinds.count("state")
            counts["appends answered base_unknown, then sent whole"] += kinds == ["append", "state"]

    try:
        for n in range(6):
            state = fresh(f"20260101_000000_random{n:02d}", total=2000)
            save(clients[0], state)
            truth[state.operation_id], history[state.operation_id] = state.copy(), [state.copy()]
        for _ in range(RANDOM_STEPS):
            operation_id = rng.choice(sorted(truth))
            client = rng.choice(clients)
            action = rng.choices(["grant", "fail", "tamper", "stale", "kill"], [60, 10, 10, 10, 3])[0]
            state = truth[operation_id].copy()
            if action == "kill":
                assert daemon.proc is not None
                daemon.proc.kill()
                daemon.proc.wait()
                daemon = DaemonProcess(socket_path, args).start()
                counts["daemon SIGKILLed and restarted"] += 1
                continue
            if action in ("grant", "fail"):
                grant(state, rng.randint(1, 3)) if action == "grant" else state.errors.append(
                    next_failure(state)
                )
                save(client, state)
                truth[operation_id] = state.copy()
                history[operation_id].append(state.copy())
                counts["saves answered ok"] += 1
            else:
                if action == "tamper":
                    grant(state)
                    if rng.random() < 0.5:
                        index = rng.randrange(len(state.prize_results) - 1)  # a recorded one
                        state.prize_results[index] = Prize("swapped", "Jackpot", 0.001, 10**6)
                    else:
                        state.metadata["price_paid"] = "1"
                else:  # an older copy, two or more granted draws behind, extended by one draw
                    older = [
                        old
                        for old in history[operation_id]
                        if old.completed_count <= state.completed_count - 2
                    ]
                    if not older:
                        continue
                    state = grant(rng.choice(older).copy())
                with pytest.raises(StaleState):
                    save(client, state)
                counts["saves refused stale_state"] += 1
            stored = clients[0].load(LOCK, operation_id)
            assert stored is not None
            assert DrawState(**{**_fields(stored), "version": 0}) == DrawState(
                **{**_fields(truth[operation_id]), "version": 0}
            )
        for operation_id, state in truth.items():
            stored = clients[1].load(LOCK, operation_id)
            assert stored is not None and (stored.results, stored.prize_results, stored.errors) == (
                state.results,
                state.prize_results,
                state.errors,
            )
    finally:
        for each in clients:
            each.close()
        daemon.stop()
    with capsys.disabled():
        print(f"\nappend saves ({APPEND_SEED_ENV}={seed}): {counts}")
    fallbacks = counts["appends answered base_unknown, then sent whole"]
    assert counts["requests sent as append"] - fallbacks > 50 and fallbacks > 10
    assert counts["saves refused stale_state"] > 10


def test_a_state_changed_while_its_save_is_under_way_is_saved_as_it_was_when_the_save_began(
    redis_url: str, make_config: Callable[..., Any], start_daemon: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The game records its next draw while a save is under way (an asyncio task, another thread),
    and that save's append is answered base_unknown: the whole state it sends then is the state as it
    was when the save began, and the next save sends the draw recorded meanwhile, once."""
    config = make_config(redis_url=redis_url)
    first = start_daemon(config)
    state = fresh("20260101_000000_append12")
    with Client(str(config.socket_path), timeout=5.0) as client:
        client.save(state)
        first.stop()
        start_daemon(config)  # it remembers nothing: the next append gets base_unknown
        began = grant(state).copy()
        real = ops.save_append

        def recording_meanwhile(*args: Any, **kwargs: Any) -> ops.Request:
            grant(state)  # the next draw, recorded while this save is being sent
            return real(*args, **kwargs)

        monkeypatch.setattr(ops, "save_append", recording_meanwhile)
        assert client.save(state).version == 2
        monkeypatch.setattr(ops, "save_append", real)
        assert client.load(LOCK, state.operation_id) == DrawState(**{**_fields(began), "version": 2})
        assert client.save(state).version == 3
        assert client.load(LOCK, state.operation_id) == DrawState(**{**_fields(state), "version": 3})


def test_draw_lists_of_other_sequence_types_are_sent_as_appends_too(client: Client, sent: list[str]) -> None:
    state = fresh("20260101_000000_append13")
    state.results = tuple(state.results)  # type: ignore[assignment]
    state.prize_results = collections.deque(state.prize_results)  # type: ignore[assignment]
    client.save(state)
    state.completed_count += 1
    state.results += (1,)  # type: ignore[operator]
    state.prize_results.append(Prize("late", "Late", 0.5, 1))
    client.save(state)
    assert sent == ["state", "append"]
    loaded = client.load(LOCK, state.operation_id)
    assert loaded is not None
    assert (loaded.results, loaded.prize_results) == (list(state.results), list(state.prize_results))


def test_a_nil_optional_field_counts_as_absent(raw: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """protocol.md §3: `append: nil` beside a state, `state: nil` beside an append, `want_base: nil`."""
    state = fresh("20260101_000000_append12").to_dict()
    first = raw({"op": "save", "state": state, "append": None, "want_base": None, "token": "n1"})
    assert (first["ok"], first["version"], "base" in first) == (True, 1, False)
    based = raw(
        {"op": "save", "state": {**state, "completed_count": PREFILLED}, "want_base": True, "token": "n2"}
    )
    assert based["ok"] and len(based["base"]) == 64
    append = one_draw_appended(state, based["base"])
    appended = raw({"op": "save", "append": append, "state": None, "token": "n3"})
    assert (appended["ok"], appended["version"]) == (True, 3), appended
    newest = raw({"op": "audit", "newest": None, "limit": 1})
    assert newest["ok"], newest
