"""The Harness the limit provocations drive: a daemon, raw peers, and helpers that read the outcome."""

from __future__ import annotations

import time
from typing import Any

import pytest

from testbed.redis_proc import RedisProcess
from tests.chaos.probes import reply_code
from tests.support.daemon import DaemonThread
from tests.support.wire import RawPeer


def _now() -> int:
    return int(time.time())


def _state(**changes: Any) -> dict[str, Any]:
    state = {
        "lock_key": "limits:1",
        "operation_id": f"op_{time.monotonic_ns()}",
        "total_count": 10,
        "completed_count": 1,
        "results": [4],
        "start_time": _now(),
        "last_update_time": _now(),
    }
    state.update(changes)
    return state


class Harness:
    """A default daemon on the module's Redis, custom daemons on demand, a stoppable Redis on demand."""

    def __init__(self, request: pytest.FixtureRequest, daemon: DaemonThread) -> None:
        self.request = request
        self.daemon = daemon
        self.peers: list[RawPeer] = []

    def peer(self, daemon: DaemonThread | None = None, timeout: float = 5.0) -> RawPeer:
        peer = RawPeer((daemon or self.daemon).config.socket_path, timeout=timeout)
        self.peers.append(peer)
        return peer

    def start(self, redis_url: str | None = None, **overrides: Any) -> DaemonThread:
        make_config = self.request.getfixturevalue("make_config")
        url = redis_url or self.request.getfixturevalue("chaos_redis").url
        daemon: DaemonThread = self.request.getfixturevalue("start_daemon")(
            make_config(redis_url=url, **overrides)
        )
        return daemon

    @property
    def stoppable_redis(self) -> RedisProcess:
        redis: RedisProcess = self.request.getfixturevalue("own_redis")
        return redis

    def codes(self, *requests: dict[str, Any], daemon: DaemonThread | None = None) -> list[str]:
        peer = self.peer(daemon)
        return [reply_code(peer.request({"id": i, **r})) for i, r in enumerate(requests)]

    def save(self, state: dict[str, Any], **fields: Any) -> str:
        return self.codes({"op": "save", "state": state, **fields})[0]

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
