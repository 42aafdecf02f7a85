"""MultiDraw when Redis applied a save but its reply was lost: resent with its token, never a false conflict.

A proxy between the daemon and Redis (tests/support/proxy.py) lets the save
through, waits for Redis's answer, and closes the connection instead of
passing it on. Whoever resends the save (the daemon within its deadline, or
the game after a retryable error) must resend it with the same token, or the
version it expects is already stale and the operation looks taken over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from drawstate import Client, MultiDraw, OutcomeUnknown, Prize, ops, resend
from drawstate.aio import AsyncClient, AsyncMultiDraw
from drawstate.appends import MIN_ITEMS_TO_APPEND, items
from drawstate.multidraw import DrawResult
from tests.support.daemon import DaemonThread
from tests.support.proxy import TcpProxy

#: Each call's deadline: short, so a save the daemon cannot finish fails fast and the game retries.
CALL_TIMEOUT_S = 1.0
DRAWS = 10


@pytest.fixture
def proxied(own_redis, make_config, start_daemon) -> Iterator[tuple[DaemonThread, TcpProxy]]:
    """A daemon that reaches its own Redis only through the proxy."""
    with TcpProxy(own_redis.socket) as proxy:
        daemon = start_daemon(make_config(redis_url=proxy.url))
        yield daemon, proxy
        daemon.stop()  # before the proxy goes


@pytest.fixture
def retries(monkeypatch) -> list[float]:
    """The back-offs MultiDraw sleeps between attempts of one save (recorded, not slept)."""
    slept: list[float] = []
    monkeypatch.setattr(resend, "_sleep", slept.append)
    return slept


def _finish(draw: MultiDraw) -> None:
    while not draw.finished:
        draw.record(draw.next_draw_index * 7)


def _assert_closed_with_every_draw(proxied, draw: MultiDraw) -> None:
    daemon, _ = proxied
    assert draw.closed == "complete"
    assert draw.state.results == [i * 7 for i in range(1, DRAWS + 1)]
    assert draw.version == DRAWS + 1  # the start, then one save per draw: none applied twice
    with daemon.client() as client:
        assert client.load(draw.lock_key, draw.operation_id) is None


def test_first_save_whose_reply_is_lost_is_resent_by_the_daemon_and_every_draw_follows(proxied, retries):
    daemon, proxy = proxied
    proxy.cut_after_next_request(b"lost:daemon")  # the start save's reply; new connections still go through
    with daemon.client(timeout=CALL_TIMEOUT_S) as client:
        draw = MultiDraw.start(client, "lost:daemon", DRAWS)
        assert proxy.replies_dropped == 1
        assert draw.version == 1
        with draw:
            _finish(draw)
    assert retries == []  # the daemon's own retry answered the first call
    _assert_closed_with_every_draw(proxied, draw)


def test_first_save_whose_reply_is_lost_is_resent_by_the_game_and_every_draw_follows(proxied, monkeypatch):
    daemon, proxy = proxied
    proxy.cut_after_next_request(b"lost:game", then_cut=True)  # and Redis stays unreachable...
    slept: list[float] = []

    def back_off(seconds: float) -> None:  # ...until MultiDraw backs off to retry
        slept.append(seconds)
        proxy.restore()

    monkeypatch.setattr(resend, "_sleep", back_off)
    with daemon.client(timeout=CALL_TIMEOUT_S) as client:
        draw = MultiDraw.start(client, "lost:game", DRAWS)  # expect_version=0: a new token would conflict
        assert proxy.replies_dropped == 1
        assert len(slept) == 1  # the first call failed (retryable), the resend was a replay
        assert draw.version == 1
        with draw:
            _finish(draw)
    _assert_closed_with_every_draw(proxied, draw)


def test_a_draw_recorded_again_after_its_lost_save_failed_every_attempt_finishes_without_conflict(
    proxied, retries
):
    daemon, proxy = proxied
    with daemon.client(timeout=CALL_TIMEOUT_S) as client:
        draw = MultiDraw.start(client, "lost:record", DRAWS, resend_deadline_s=2.5)
        draw.record(7)
        proxy.cut_after_next_request(b"lost:record", then_cut=True)
        with pytest.raises(OutcomeUnknown):
            draw.record(14)  # applied by Redis, but no attempt of the session got an answer
        assert proxy.replies_dropped == 1
        assert len(retries) >= 1  # resent, with the same token, until the resend deadline
        assert draw.next_draw_index == 2  # not recorded as far as the game knows
        proxy.restore()
        draw.record(14)  # the same draw again: the lost save is resent with its token
        assert draw.version == 3
        with draw:
            _finish(draw)
    _assert_closed_with_every_draw(proxied, draw)


def _lose_a_save_then_record_again(proxied, lock_key: str, first: DrawResult, again: DrawResult) -> MultiDraw:
    """`first` recorded while its save's reply is lost for good (OutcomeUnknown), then `again`."""
    daemon, proxy = proxied
    with daemon.client(timeout=CALL_TIMEOUT_S) as client:
        draw = MultiDraw.start(client, lock_key, DRAWS, resend_deadline_s=2.5)
        draw.record(7)
        proxy.cut_after_next_request(lock_key.encode(), then_cut=True)
        with pytest.raises(OutcomeUnknown):
            draw.record(first)  # applied by Redis, but no attempt of the session got an answer
        proxy.restore()
        draw.record(again)  # the same draw again: the lost save is resent with its token
        assert draw.version == 3
        return draw


def test_a_failed_draw_recorded_again_after_its_lost_save_failed_every_attempt_is_not_a_conflict(
    proxied, retries
):
    """Recording the exception again makes a DrawError with a new timestamp: still the same draw."""
    draw = _lose_a_save_then_record_again(
        proxied, "lost:error", RuntimeError("rng timeout"), RuntimeError("rng timeout")
    )
    assert [(e.draw_index, e.error_message) for e in draw.state.errors] == [(2, "RuntimeError: rng timeout")]
    daemon, _ = proxied
    with daemon.client() as client:
        assert client.load(draw.lock_key, draw.operation_id) == draw.state  # the one Redis holds


@dataclass(frozen=True, slots=True)
class GamePrize(Prize):
    """A game's own Prize type: it is sent as a Prize is."""


def test_a_prize_recorded_again_as_another_prize_type_after_its_lost_save_is_not_a_conflict(proxied, retries):
    draw = _lose_a_save_then_record_again(
        proxied, "lost:prize", GamePrize("p1", "Gem", 0.5, 1), Prize("p1", "Gem", 0.5, 1)
    )
    daemon, _ = proxied
    with daemon.client() as client:
        stored = client.load(draw.lock_key, draw.operation_id)
    assert stored is not None and stored.prize_results == [Prize("p1", "Gem", 0.5, 1)]
    assert stored.to_dict() == draw.state.to_dict()
    assert type(draw.state.prize_results[0]) is GamePrize  # the session holds the save it resent


def test_a_long_pull_s_append_whose_reply_is_lost_is_resent_with_its_token(proxied, retries, monkeypatch):
    """Past the append threshold the lost save was an append; it is resent, never applied twice."""
    daemon, proxy = proxied
    appends: list[str] = []
    save_append = ops.save_append

    def counted(append: dict[str, Any], **fields: Any) -> ops.Request:
        appends.append(append["operation_id"])
        return save_append(append, **fields)

    monkeypatch.setattr(ops, "save_append", counted)
    total = 60
    prizes = [Prize(f"p{n}", "Gem", 0.125, n) for n in range(1, total + 1)]
    with daemon.client(timeout=CALL_TIMEOUT_S) as client:
        draw = MultiDraw.start(client, "lost:append", total, resend_deadline_s=2.5)
        for prize in prizes[:40]:
            draw.record(prize)
        assert items(draw.state) >= MIN_ITEMS_TO_APPEND and appends  # its saves go as appends by now
        before = len(appends)
        proxy.cut_after_next_request(b"lost:append", then_cut=True)
        with pytest.raises(OutcomeUnknown):
            draw.record(prizes[40])
        assert len(appends) == before + 1  # the lost save's first request was an append
        proxy.restore()
        for prize in prizes[40:]:
            draw.record(prize)
        assert draw.version == total + 1  # the start, then one save per draw: none applied twice
        assert client.load(draw.lock_key, draw.operation_id) == draw.state
        assert draw.state.prize_results == prizes
        assert draw.complete()


def test_an_asyncio_record_cancelled_mid_save_is_resent_with_its_token(proxied):
    """The task saving a draw is cancelled after the save left; Redis applies it; the draw again."""
    daemon, proxy = proxied

    async def saving_in_daemon() -> bool:
        return daemon.call(lambda: daemon.server.stats.in_flight) == 1  # type: ignore[no-any-return]

    async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await predicate():
            assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
            await asyncio.sleep(0.01)  # polling

    async def scenario() -> AsyncMultiDraw:
        async with AsyncClient(str(daemon.config.socket_path), timeout=5.0) as client:
            draw = await AsyncMultiDraw.start(client, "lost:cancel", DRAWS)
            await draw.record(7)
            proxy.stall()
            saving = asyncio.ensure_future(draw.record(14))
            await until(saving_in_daemon)  # the save is in the daemon, held at Redis
            saving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await saving
            proxy.unstall()

            async def applied() -> bool:
                stored = await client.load("lost:cancel", draw.operation_id)
                return stored is not None and stored.version == 3

            await until(applied)
            assert await draw.record(14) == 2  # resent with its token: a replay, not a conflict
            assert draw.version == 3
            return draw

    draw = asyncio.run(scenario())
    assert draw.state.results == [7, 14]


def test_a_record_interrupted_after_its_save_left_is_resent_with_its_token(daemon, monkeypatch):
    """A KeyboardInterrupt once the save reached Redis: the draw recorded again is a replay."""
    with daemon.client(timeout=CALL_TIMEOUT_S) as client:
        draw = MultiDraw.start(client, "interrupted:record", DRAWS)
        draw.record(7)
        real_save = Client.save

        def save_then_interrupt(self: Client, *args: Any, **kwargs: Any) -> Any:
            real_save(self, *args, **kwargs)  # applied
            raise KeyboardInterrupt

        monkeypatch.setattr(Client, "save", save_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            draw.record(14)
        monkeypatch.undo()
        assert draw.record(14) == 2  # resent with its token: a replay, not a conflict
        assert draw.version == 3
        assert client.load(draw.lock_key, draw.operation_id) == draw.state
