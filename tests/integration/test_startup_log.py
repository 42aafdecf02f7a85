"""The daemon's start-up line says the essentials in one short line; the whole configuration only at DEBUG."""

from __future__ import annotations

import pytest

from tests.support.daemon import DaemonProcess

#: An operator reads the start-up line on a terminal or in journald: it must stay short.
MAX_LINE_CHARS = 300


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_start_up_logs_one_short_line_of_essentials_and_the_full_config_only_at_debug(
    own_redis, sock_dir, level
):
    daemon = DaemonProcess(
        sock_dir / "d.sock",
        ["--redis-url", own_redis.url, "--data-dir", str(sock_dir / "data"), "--log-level", level],
    ).start()
    try:
        log = daemon.log()
    finally:
        daemon.stop()
    [starting] = [line for line in log.splitlines() if "starting drawstate daemon" in line]
    assert len(starting) <= MAX_LINE_CHARS, starting
    for essential in ("socket=", "redis=", "data_dir=", "ttl_s=", "durability="):
        assert essential in starting
    full = [line for line in log.splitlines() if "configuration" in line and "Config(" in line]
    assert len(full) == (1 if level == "DEBUG" else 0)
