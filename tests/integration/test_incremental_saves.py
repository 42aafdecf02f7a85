"""Saves checked by what they append, with a real daemon and Redis: what the daemon remembers, and
what save.lua still refuses whatever the daemon remembers (ops/accepted.py, the `_digest` claim).

The daemons run in this process (DaemonThread), so a test can count the full rules checks the
save op runs and read what its cache holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drawstate import Client, InvalidDrawState, OperationClosed, StaleState, new_operation_id
from drawstate.limits import DRAW_INT_MAX
from drawstated import keys
from drawstated.codec import DIGEST_FIELD
from drawstated.ops import accepted as accepted_module
from drawstated.ops.accepted import Accepted
from tests.support.daemon import DaemonThread

GOLD = {"id": "gold", "name": "Gold", "probability": 0.1, "value": 500}
GILD = {"id": "gild", "name": "Gold", "probability": 0.1, "value": 500}  # same length as GOLD


def state(operation_id: str, results: list[int], **changes: Any) -> dict[str, Any]:
    """A state of the test's operation with `results` granted (as many as completed_count)."""
    data: dict[str, Any] = {
        "lock_key": "player:incr",
        "operation_id": operation_id,
        "total_count": 10,
        "completed_count": len(results),
        "results": results,
        "start_time": 1_700_000_000,
        "last_update_time": 1_700_000_000 + len(results),
        "metadata": {"user_id": "1001", "price_paid": "1600"},
    }
    data.update(changes)
    return data


@pytest.fixture
def full_checks(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every full rules check a save runs, from now on (each call's state)."""
    calls: list[object] = []
    real = accepted_module.check_state

    def counting(data: object, *args: Any) -> None:
        calls.append(data)
        real(data, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(accepted_module, "check_state", counting)
    return calls


def remembered(daemon: DaemonThread, operation_id: str) -> Accepted | None:
    save_op: Any = daemon.server.state.ops.fast["save"]  # type: ignore[union-attr]
    return daemon.call(lambda: save_op.accepted.get("player:incr", operation_id))  # type: ignore[no-any-return]


def stored(rdb: Any, operation_id: str) -> dict[str, Any]:
    return json.loads(rdb.get(keys.state_key("lottery", "player:incr", operation_id)))  # type: ignore[no-any-return]


@pytest.fixture
def second_daemon(
    redis_url: str, make_config: Callable[..., Any], start_daemon: Any, sock_dir: Any
) -> Iterator[Client]:
    """Another daemon on the same Redis, as on another game host."""
    other = start_daemon(
        make_config(redis_url=redis_url, socket_path=sock_dir / "e.sock", data_dir=sock_dir / "e")
    )
    with other.client(timeout=5.0) as client:
        yield client


def test_a_save_extending_the_last_accepted_state_runs_the_rules_on_the_new_draws_only(
    client: Client, daemon: DaemonThread, rdb: Any, full_checks: list[object]
) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))
    assert len(full_checks) == 1  # nothing remembered yet: the whole state
    for n in range(3, 8):
        client.save(state(op, list(range(1, n + 1))))
    assert len(full_checks) == 1
    entry = remembered(daemon, op)
    assert entry is not None and (entry.recorded.results, entry.recorded.total) == (7, 10)
    assert len(stored(rdb, op)[DIGEST_FIELD]) == 64


def test_rewriting_a_recorded_draw_to_a_text_of_the_same_length_is_stale_state(
    client: Client, full_checks: list[object]
) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))
    with pytest.raises(StaleState) as caught:  # "1,2" and "1,3,4": the claim is made, and differs
        client.save(state(op, [1, 3, 4]))
    assert caught.value.details["field"] == "results"
    assert len(full_checks) == 2


def test_rewriting_a_recorded_prize_to_a_text_of_the_same_length_is_stale_state(client: Client) -> None:
    op = new_operation_id()
    client.save(state(op, [1], prize_results=[GOLD]))
    with pytest.raises(StaleState) as caught:
        client.save(state(op, [1, 2], prize_results=[GILD, GOLD]))
    assert caught.value.details["field"] == "prize_results"


def test_a_recorded_draw_rewritten_to_break_a_rule_is_refused_as_the_callers_mistake(client: Client) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))
    with pytest.raises(InvalidDrawState) as caught:  # not stale_state: the rules come first
        client.save(state(op, [1, DRAW_INT_MAX + 1, 3]))
    assert caught.value.details["source"] == "request"
    assert "results[1]" in str(caught.value)


def test_a_recorded_prize_broken_at_the_same_length_is_refused_as_the_callers_mistake(
    client: Client, daemon: DaemonThread
) -> None:
    """Probability 0.1 → 2.1 keeps the list's text length, so its first bytes end where the remembered
    ones did: only their hash shows a recorded draw changed, and the full rules then name it."""
    op = new_operation_id()
    client.save(state(op, [1], prize_results=[GOLD]))
    assert remembered(daemon, op) is not None
    with pytest.raises(InvalidDrawState) as caught:
        client.save(state(op, [1, 2], prize_results=[{**GOLD, "probability": 2.1}, GOLD]))
    assert caught.value.details["source"] == "request"
    assert "prize_results[0].probability" in str(caught.value)


def test_an_appended_draw_that_breaks_a_rule_is_refused_when_the_rest_is_remembered(
    client: Client, daemon: DaemonThread
) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))
    assert remembered(daemon, op) is not None
    with pytest.raises(InvalidDrawState) as caught:
        client.save(state(op, [1, 2, 3], prize_results=[{**GOLD, "probability": 2.0}]))
    assert "prize_results[0].probability" in str(caught.value)


def test_another_daemons_save_in_between_is_kept_whatever_this_daemon_remembers(
    client: Client, second_daemon: Client
) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))  # this daemon remembers [1, 2]
    second_daemon.save(state(op, [1, 2, 3]))
    with pytest.raises(StaleState) as caught:  # extends what this daemon saw, rewrites the other's draw
        client.save(state(op, [1, 2, 7, 8]))
    assert caught.value.details["field"] == "results"
    client.save(state(op, [1, 2, 3, 4]))  # extends what is stored: fine
    assert client.load("player:incr", op).results == [1, 2, 3, 4]


def test_a_state_stored_without_a_digest_is_compared_as_text(client: Client, rdb: Any) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))
    key = keys.state_key("lottery", "player:incr", op)
    document = stored(rdb, op)
    del document[DIGEST_FIELD]  # as a daemon of an earlier version wrote it
    rdb.set(key, json.dumps(document, separators=(",", ":")).encode(), px=60_000)
    with pytest.raises(StaleState):
        client.save(state(op, [1, 3, 4]))
    client.save(state(op, [1, 2, 3]))
    assert stored(rdb, op)[DIGEST_FIELD]


def test_a_daemon_remembering_nothing_checks_every_save_whole(
    redis_url: str, make_config: Callable[..., Any], start_daemon: Any, full_checks: list[object]
) -> None:
    daemon = start_daemon(make_config(redis_url=redis_url, accepted_cache_entries=0))
    op = new_operation_id()
    with daemon.client(timeout=5.0) as client:
        for n in range(1, 4):
            client.save(state(op, list(range(1, n + 1))))
        with pytest.raises(StaleState):
            client.save(state(op, [1, 5, 3, 4]))
    assert len(full_checks) == 4
    assert remembered(daemon, op) is None


def test_a_save_meeting_its_operations_tombstone_forgets_it(client: Client, daemon: DaemonThread) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]))
    client.rollback("player:incr", op, reason="test")
    with pytest.raises(OperationClosed):
        client.save(state(op, [1, 2, 3]))
    assert remembered(daemon, op) is None


def test_a_replayed_save_leaves_what_the_daemon_remembers_unchanged(
    client: Client, daemon: DaemonThread
) -> None:
    op = new_operation_id()
    client.save(state(op, [1, 2]), token="first")
    client.save(state(op, [1, 2, 3]), token="second")
    assert client.save(state(op, [1, 2, 3, 4]), token="second").version == 2  # a replay: nothing stored
    entry = remembered(daemon, op)
    assert entry is not None and entry.recorded.results == 3
