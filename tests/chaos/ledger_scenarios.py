"""The ledger test's forced paths: each money path the random chaos may miss, made to happen once.

The random run covers most paths most of the time, but a path that needs two blows to line up
(a rollback during an outage, then the outage's end; a save whose reply is lost, then nobody
resuming) can be missed by a seed, and then the test would pass without exercising it. So
before the chaos starts, with both daemons and the refund worker running and no game yet, this
phase forces each one, through the same ledger and backend as every other process:

- an inline refund (a rollback whose caller is told to pay);
- an in-doubt record: a save applied whose reply is lost, the game told OutcomeUnknown, so it
  does not grant the draw, and nobody resumes: the operation expires and the refund worker
  must grant that draw (and refund the rest);
- a deferred rollback applied: host A cut off from Redis rolls back an operation whose last
  draw the game never granted (it "died" between record and grant); the link comes back and
  the rollback is applied: the worker grants that draw, not the one the game granted, and
  refunds the rest;
- a rollback superseded: another operation rolled back on A during the same outage is resumed
  and completed on host B first;
- a refund parked for a person: the rollback of a state that cannot be read.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from drawstate import Client, DrawStateCorrupted, MultiDraw, OutcomeUnknown, new_operation_id
from testbed.redis_proc import RedisProcess
from tests.chaos.ledger_actors import Ledger, draw_value, grant_state, record, roll_back, roll_back_to_stream
from tests.support.proxy import TcpProxy

#: Each call's timeout: above the daemons' --max-deadline-ms (2 s), so a rollback host A defers
#: (after 60 % of that deadline) is answered well within it, even on two busy cores.
CALL_TIMEOUT_S = 4.0
#: How long a scenario save is resent before OutcomeUnknown.
RESEND_DEADLINE_S = 2.0
#: The TTL of the in-doubt operation: it expires while the next scenarios run.
IN_DOUBT_TTL_S = 2
#: How long a scenario waits for the daemons to settle what it forced (2 busy cores).
SETTLE_TIMEOUT_S = 30.0
POLL_S = 0.05
METADATA = {"price_paid": "400", "user_id": "scenario"}


def force_money_paths(
    ledger_dir: Path, socket_a: Path, socket_b: Path, proxy: TcpProxy, redis: RedisProcess
) -> None:
    """Run every forced scenario once; raise AssertionError if one did not take the path meant."""
    ledger = Ledger(ledger_dir, "scenario")
    try:
        with Client(socket_a, timeout=CALL_TIMEOUT_S) as a, Client(socket_b, timeout=CALL_TIMEOUT_S) as b:
            _inline_refund(ledger, b)
            _stream_refund(ledger, a)
            in_doubt = _in_doubt_record(ledger, a, proxy)
            _deferred_and_superseded(ledger, a, b, proxy)
            _unreadable_state(b, redis)
            _wait(lambda: _ended(b, in_doubt), "the in-doubt operation never expired")
    finally:
        proxy.restore()
        ledger.close()


def _start(ledger: Ledger, client: Client, name: str, total: int, **options: int) -> MultiDraw:
    draw = MultiDraw.start(
        client, f"scenario:{name}", total, metadata=METADATA, resend_deadline_s=RESEND_DEADLINE_S, **options
    )
    ledger.write(k="start", op=draw.operation_id, lock=draw.lock_key, total=total)
    return draw


def _record_and_grant(ledger: Ledger, draw: MultiDraw) -> None:
    value = draw_value(draw.operation_id, draw.next_draw_index)
    index = record(ledger, draw, value)
    ledger.grant(draw.operation_id, index, value)


def _inline_refund(ledger: Ledger, b: Client) -> None:
    draw = _start(ledger, b, "inline", 3)
    _record_and_grant(ledger, draw)
    roll_back(ledger, draw, "scenario: player cancelled")
    assert draw.rollback().final, "a rollback with Redis reachable tells its caller to pay"


def _stream_refund(ledger: Ledger, a: Client) -> None:
    draw = _start(ledger, a, "by-stream", 3)
    _record_and_grant(ledger, draw)
    roll_back_to_stream(ledger, a, draw, "scenario: an operator's sweep")
    again = a.rollback(draw.lock_key, draw.operation_id, token=draw.rollback_token)  # now asking to pay
    assert not again.final, "a rollback decided for the stream stays decided for the stream"


def _in_doubt_record(ledger: Ledger, a: Client, proxy: TcpProxy) -> str:
    """Draw 2's save reaches Redis, its reply is lost and Redis stays away: OutcomeUnknown, no grant."""
    draw = _start(ledger, a, "in-doubt", 3, ttl_s=IN_DOUBT_TTL_S)
    _record_and_grant(ledger, draw)
    proxy.cut_after_next_request(draw.lock_key.encode(), then_cut=True)
    try:
        record(ledger, draw, draw_value(draw.operation_id, draw.next_draw_index))
    except OutcomeUnknown:
        pass  # written down as in doubt; the game stops here, and nobody resumes it
    else:
        raise AssertionError("a save whose reply was lost, with Redis away, must end OutcomeUnknown")
    finally:
        proxy.restore()
    assert proxy.replies_dropped >= 1
    return draw.operation_id


def _deferred_and_superseded(ledger: Ledger, a: Client, b: Client, proxy: TcpProxy) -> None:
    ungranted = _start(ledger, a, "deferred", 4)
    _record_and_grant(ledger, ungranted)
    record(ledger, ungranted, draw_value(ungranted.operation_id, ungranted.next_draw_index))  # never granted
    taken = _start(ledger, a, "superseded", 3)
    _record_and_grant(ledger, taken)
    proxy.cut()
    try:
        for draw in (ungranted, taken):
            with contextlib.suppress(OutcomeUnknown):  # in doubt: its intent is resolved at the end
                roll_back(ledger, draw, "scenario: gave up during an outage")
        assert a.stats().deferred_rollbacks == 2, "host A, cut off, must journal both rollbacks"
        resumed = MultiDraw.resume(b, taken.lock_key, taken.operation_id, resend_deadline_s=RESEND_DEADLINE_S)
        assert resumed is not None
        grant_state(ledger, resumed.state)
        while not resumed.finished:
            _record_and_grant(ledger, resumed)
        resumed.complete()
        ledger.write(k="complete", op=resumed.operation_id)
    finally:
        proxy.restore()
    _wait(lambda: a.stats().deferred_rollbacks == 0, "host A never applied its deferred rollbacks")


def _unreadable_state(b: Client, redis: RedisProcess) -> None:
    lock_key, operation_id = "scenario:unreadable", new_operation_id()
    with redis.client() as rdb:
        rdb.set(f"lottery:state:{{{lock_key}}}:{operation_id}", b"not json at all")
    try:
        b.rollback(lock_key, operation_id, reason="scenario: unreadable")
    except DrawStateCorrupted:
        return  # removed, and its event carries the raw value: the stream owes a refund by hand
    raise AssertionError("the rollback of an unreadable state must say so")


def _ended(client: Client, operation_id: str) -> bool:
    return any(e.operation_id == operation_id and e.terminal for e in client.iter_audit())


def _wait(condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(failure)
        time.sleep(POLL_S)
