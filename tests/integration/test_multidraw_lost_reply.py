"""MultiDraw when Redis applied a save but its reply was lost: resent with its token, never a false conflict.

A proxy between the daemon and Redis (tests/support/proxy.py) lets the save
through, waits for Redis's answer, and closes the connection instead of
passing it on. Whoever resends the save (the daemon within its deadline, or
the game after a retryable error) must resend it with the same token, or the
version it expects is already stale and the operation looks taken over.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from drawstate import MultiDraw, OutcomeUnknown, resend
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
