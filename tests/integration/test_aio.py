"""drawstate.aio against real daemons: concurrency on one connection, cancellation and restarts, on two loops.

Each test runs its coroutine on a fresh event loop of the kind the parameter names, so every
behaviour is shown on asyncio's own loop and on uvloop's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from drawstate import (
    DrawState,
    InvalidDrawState,
    Retry,
    SidecarTimeout,
    SidecarUnavailable,
    VersionConflict,
    new_operation_id,
)
from drawstate.aio import AsyncClient, AsyncMultiDraw
from tests.support.proxy import TcpProxy

METADATA = {"user_id": "9", "banner": "spring", "price_paid": "900"}
LOOPS: dict[str, Callable[[Coroutine[Any, Any, Any]], Any]] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    return LOOPS[request.param]


def _state(lock_key: str) -> DrawState:
    now = int(time.time())
    return DrawState(
        lock_key, new_operation_id(), 10, start_time=now, last_update_time=now, metadata=METADATA
    )


def test_a_thousand_concurrent_saves_from_one_event_loop_share_one_connection(daemon, run):
    async def main() -> list[int]:
        async with AsyncClient(daemon.config.socket_path, timeout=10) as client:
            states = [_state(f"aio:many:{i}") for i in range(1000)]
            results = await asyncio.gather(*(client.save(s, expect_version=0) for s in states))
            loaded = await asyncio.gather(*(client.load(s.lock_key, s.operation_id) for s in states[:50]))
            assert all(state is not None and state.version == 1 for state in loaded)
            return [result.version for result in results]

    started = time.monotonic()
    assert run(main()) == [1] * 1000
    connections = daemon.call(lambda: daemon.server.stats.connections_total)
    seconds = time.monotonic() - started
    print(f"aio: 1000 concurrent saves + 50 loads in {seconds:.2f} s over {connections} connection(s)")
    assert connections == 1


def test_a_call_cancelled_in_the_middle_of_a_pipelined_batch_leaves_the_connection_in_step(daemon, run):
    async def main() -> None:
        async with AsyncClient(daemon.config.socket_path, timeout=10) as client:
            states = [_state(f"aio:cancel:{i}") for i in range(200)]
            for state in states[::2]:  # saved once already: their next save answers version 2
                await client.save(state)
            tasks = [asyncio.create_task(client.save(s)) for s in states]
            await asyncio.sleep(0)  # every request written; none answered yet
            for task in tasks[::3]:
                task.cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            cancelled = sum(isinstance(result, asyncio.CancelledError) for result in done)
            assert cancelled == len(tasks[::3])
            # Each call got its own reply: a cancelled call's reply handed to another shows as the
            # wrong version.
            versions = {
                i: result.version for i, result in enumerate(done) if not isinstance(result, BaseException)
            }
            assert versions == {i: 2 if i % 2 == 0 else 1 for i in versions}
            # The connection is in step: every later call gets its own reply, not a stale one.
            for state in states:
                loaded = await client.load(state.lock_key, state.operation_id)
                assert loaded is None or loaded.operation_id == state.operation_id
            ping = await client.ping()
            assert ping.up

    run(main())


def test_calls_abandoned_by_their_callers_leave_every_other_reply_to_its_own_call(daemon, run):
    async def main() -> None:
        async with AsyncClient(daemon.config.socket_path, timeout=5) as client:
            states = [_state(f"aio:abandon:{i}") for i in range(100)]
            for state in states:
                await client.save(state, expect_version=0)

            async def load(state: DrawState, patience: float) -> DrawState | None:
                return await asyncio.wait_for(client.load(state.lock_key, state.operation_id), patience)

            # Half the callers give up at once: their replies arrive later and must be dropped.
            results = await asyncio.gather(
                *(load(state, 1e-6 if i % 2 else 5.0) for i, state in enumerate(states)),
                return_exceptions=True,
            )
            for i, (state, result) in enumerate(zip(states, results, strict=True)):
                if i % 2:
                    assert isinstance(result, TimeoutError)
                else:
                    assert isinstance(result, DrawState) and result.operation_id == state.operation_id
            assert (await client.ping()).up

    run(main())


def test_calls_survive_a_daemon_restart_under_load(redis_url, make_config, start_daemon, run):
    config = make_config(redis_url=redis_url)
    first = start_daemon(config)

    async def main() -> tuple[int, int]:
        saves, resent = 0, 0
        stop = asyncio.Event()
        async with AsyncClient(config.socket_path, timeout=5) as client:

            async def player(i: int) -> None:
                """Saves one operation draw by draw, resending a save in doubt with its token."""
                nonlocal saves, resent
                state = _state(f"aio:restart:{i}")
                state.total_count = 1000
                version = 0
                while not stop.is_set() and state.completed_count < state.total_count:
                    token = new_operation_id()
                    while True:
                        try:
                            version = (await client.save(state, expect_version=version, token=token)).version
                            break
                        except (SidecarTimeout, SidecarUnavailable):
                            resent += 1  # the daemon is restarting: the same save again
                            await asyncio.sleep(0.02)
                    saves += 1
                    state.completed_count += 1
                    state.results.append(i)
                    await asyncio.sleep(0.01)  # a draw's pace: the load spans the restart

            players = [asyncio.create_task(player(i)) for i in range(50)]
            await asyncio.sleep(0.2)
            await asyncio.to_thread(first.stop)
            await asyncio.sleep(0.1)  # no daemon at all for a moment: calls fail and are resent
            await asyncio.to_thread(start_daemon, config)  # the same socket path, a new daemon
            await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*players)  # a VersionConflict here would be a save applied twice
            assert (await client.ping()).up
        return saves, resent

    saves, resent = run(main())
    print(f"aio restart: {saves} saves by 50 players across a daemon restart, {resent} resent")
    assert saves > 50 and resent > 0


def test_an_idle_connection_a_restarted_daemon_closed_is_replaced_on_the_next_call(
    redis_url, make_config, start_daemon, run
):
    """The daemon restarts while the client is idle: the next call finds the old connection dead
    only when it writes, before its reader saw the end, and goes out once more on a new one."""
    config = make_config(redis_url=redis_url)
    first = start_daemon(config)

    async def main() -> None:
        async with AsyncClient(config.socket_path, timeout=5) as client:
            assert (await client.ping()).up
            # As when the game's loop is busy while the daemon goes: the reader does not see the end.
            client._connection._writer.transport.pause_reading()  # type: ignore[union-attr]
            await asyncio.to_thread(first.stop)
            await asyncio.to_thread(start_daemon, config)  # the same socket path, a new daemon
            assert (await client.ping()).up
            assert (await client.ping()).up

    run(main())


def test_async_multidraw_records_completes_and_rolls_back_like_the_blocking_one(daemon, run):
    async def main() -> None:
        async with AsyncClient(daemon.config.socket_path, timeout=5) as client:
            async with AsyncMultiDraw.start(client, "aio:md", 3, metadata=METADATA) as draw:
                while not draw.finished:
                    await draw.record(draw.next_draw_index * 10)
            assert draw.closed == "complete" and draw.state.results == [10, 20, 30]

            other = await AsyncMultiDraw.start(client, "aio:md:rb", 4, metadata=METADATA)
            await other.record(7)
            resumed = await AsyncMultiDraw.resume(client, "aio:md:rb")
            assert resumed is not None and resumed.next_draw_index == 2
            with pytest.raises(VersionConflict):
                await other.record(8)  # the resumer owns it now
            refund = await resumed.rollback("player left")
            assert (refund.final, refund.granted_count, refund.ungranted_count) == (True, 1, 3)
            assert await resumed.rollback("again") is refund
            assert await AsyncMultiDraw.resume(client, "aio:md:rb") is None
            with pytest.raises(InvalidDrawState):  # a caller mistake: a ValueError too
                await client.save({**_state("aio:bad").to_dict(), "completed_count": 99})

    run(main())


def test_async_multidraw_rolls_back_on_error_when_asked(daemon, run):
    async def main() -> None:
        async with AsyncClient(daemon.config.socket_path, timeout=5) as client:
            with pytest.raises(KeyError):
                async with AsyncMultiDraw.start(client, "aio:err", 5, on_error="rollback") as draw:
                    await draw.record(1)
                    raise KeyError("prize table")
            assert draw.closed == "rollback"
            events = [e async for e in client.iter_audit("aio:err")]
            assert [e.event for e in events] == ["rollback"] and "KeyError" in events[0].reason

    run(main())


def test_a_call_whose_connection_breaks_after_it_went_out_is_sent_again_on_a_new_one(daemon, sock_dir, run):
    """The daemon applies the save and answers, but the answer is lost with the connection: the
    client sends the same save again on a new connection, and the token makes it a replay."""
    with TcpProxy(daemon.config.socket_path, listen_path=sock_dir / "mitm.sock") as mitm:

        async def main() -> None:
            async with AsyncClient(mitm.listen_path, timeout=5) as client:
                assert (await client.ping()).up  # an open connection: its break is not a refusal
                state = _state("aio:reconnect")
                mitm.cut_after_next_request(b"save")
                assert (await client.save(state, expect_version=0)).version == 1  # no error: resent once
                assert mitm.replies_dropped == 1 and mitm.connections_accepted == 2
                loaded = await client.load(state.lock_key, state.operation_id)
                assert loaded is not None and loaded.version == 1

        run(main())


def test_a_retry_policy_resends_retryable_failures_and_logs_each_at_debug(tmp_path: Path, caplog, run):
    caplog.set_level(logging.DEBUG, logger="drawstate.retry")
    retry = Retry(attempts=3, backoff_s=0.01, max_backoff_s=0.02)

    async def main() -> None:
        async with AsyncClient(tmp_path / "nobody.sock", timeout=0.5, retry=retry) as client:
            with pytest.raises(SidecarUnavailable):
                await client.ping()

    run(main())
    retries = [record for record in caplog.records if record.name == "drawstate.retry"]
    assert len(retries) == 2  # three attempts: two resends
    assert all(
        record.levelno == logging.DEBUG and "sidecar_unavailable" in record.getMessage() for record in retries
    )
