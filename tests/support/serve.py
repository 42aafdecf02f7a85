"""`drawstate serve` run to its own exit, for start-up refusals: exit code and the one stderr line."""

from __future__ import annotations

import os
import subprocess
import sys

#: A refused start-up takes no Redis round trip: it fails long before this.
REFUSAL_TIMEOUT_S = 30


def serve_once(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m drawstated ARGS`, expected to exit by itself; $DRAWSTATE_SOCKET is dropped."""
    base = {key: value for key, value in os.environ.items() if key != "DRAWSTATE_SOCKET"}
    return subprocess.run(
        [sys.executable, "-m", "drawstated", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_S,
        check=False,
    )


def one_line(stderr: str) -> str:
    """The single line an expected start-up failure prints; fails on more lines or a traceback."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]
