"""A deferred rollback is on disk before the caller hears "deferred"; a rewrite is durable before it counts.

The daemon runs in a thread of this process, so os.fsync, os.replace and the connection's reply
writer can be wrapped to note, in one sequence, what was fsynced (by the path behind its fd),
what was renamed, and when the `deferred` reply went out. Remove any of the journal's fsyncs
and these tests fail.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from drawstated.deferred import JOURNAL_NAME
from drawstated.server.connection import Connection
from tests.support.waiting import wait_until

Event = tuple[str, str]


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """("fsync", path), ("rename", destination) and ("reply", "deferred"), in the order they happened."""
    seen: list[Event] = []
    real_fsync, real_replace, real_write = os.fsync, os.replace, Connection._write

    def fsync(fd: int) -> None:
        seen.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        seen.append(("rename", str(dst)))
        real_replace(src, dst, **kwargs)

    def write(self: Connection, message: dict[str, Any]) -> None:
        if message.get("cleanup") == "deferred":
            seen.append(("reply", "deferred"))
        real_write(self, message)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Connection, "_write", write)
    return seen


def _about(events: list[Event], data_dir: Path) -> list[Event]:
    """The events that concern the data dir and its files, or a reply."""
    inside = str(data_dir.resolve())
    return [event for event in events if event[0] == "reply" or event[1].startswith(inside)]


def test_the_record_and_its_new_directory_entry_are_fsynced_before_the_deferred_reply(
    events, own_redis, make_config: Callable[..., Any], start_daemon, new_state
):
    config = make_config(redis_url=own_redis.url, cleanup_retry_s=0.05)
    daemon = start_daemon(config)
    journal, data_dir = str(config.data_dir.resolve() / JOURNAL_NAME), str(config.data_dir.resolve())
    first, second = new_state(), new_state()
    with daemon.client(timeout=2.0) as client:
        client.save(first)
        client.save(second)
        own_redis.kill()
        events.clear()
        assert client.rollback(first, token="tok-1").cleanup == "deferred"
        # The journal was created: its record, then the directory entry, then the reply.
        assert _about(events, config.data_dir) == [
            ("fsync", journal),
            ("fsync", data_dir),
            ("reply", "deferred"),
        ]
        events.clear()
        assert client.rollback(second, token="tok-2").cleanup == "deferred"
        assert _about(events, config.data_dir) == [("fsync", journal), ("reply", "deferred")]
        events.clear()
        own_redis.start()
        wait_until(lambda: daemon.call(lambda: len(daemon.server.cleanup)) == 0)
        # Both applied: the journal is emptied in place, durably.
        wait_until(lambda: ("fsync", journal) in _about(events, config.data_dir))
    assert Path(journal).read_bytes() == b""


def test_a_journal_rewrite_fsyncs_the_new_file_before_the_rename_and_the_directory_after(
    events, redis_url: str, make_config: Callable[..., Any], start_daemon
):
    config = make_config(redis_url=redis_url, cleanup_retry_s=3600.0)
    config.data_dir.mkdir(mode=0o700)
    journal = config.data_dir / JOURNAL_NAME
    old_format = {"lock_key": "player:1", "operation_id": "op-1", "reason": "", "deferred_at": time.time()}
    journal.write_bytes(orjson.dumps(old_format) + b"\n")  # the format before records were framed
    events.clear()
    start_daemon(config)  # replays it and rewrites it framed
    resolved = str(journal.resolve())
    rewrite = [event for event in _about(events, config.data_dir) if event != ("fsync", resolved)][:3]
    assert rewrite == [
        ("fsync", resolved + ".tmp"),
        ("rename", str(journal)),
        ("fsync", str(config.data_dir.resolve())),
    ]
    assert journal.stat().st_mode & 0o777 == 0o600
