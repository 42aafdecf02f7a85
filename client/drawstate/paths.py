"""Where the daemon's socket lives by default; the daemon and the client agree on it here."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_ENV = "DRAWSTATE_SOCKET"
SOCKET_NAME = "drawstate.sock"


def default_socket_path() -> Path:
    """$DRAWSTATE_SOCKET, else $XDG_RUNTIME_DIR/drawstate.sock, else /tmp/drawstate-<uid>/drawstate.sock."""
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return Path(explicit)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return Path(f"/tmp/drawstate-{os.getuid()}") / SOCKET_NAME
