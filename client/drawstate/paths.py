"""Where the daemon's socket lives by default, and whether that directory is safe to trust.

The daemon and the client agree on the path here. The default directory
(/tmp/drawstate-<uid>, or $XDG_RUNTIME_DIR) is checked the way tmux and
ssh-agent check theirs: another local user who creates it first, or who can
write to it, could put their own socket there and receive the game's saves.
An explicitly configured path (an argument or $DRAWSTATE_SOCKET) is the
operator's choice and is not second-guessed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SOCKET_ENV = "DRAWSTATE_SOCKET"
SOCKET_NAME = "drawstate.sock"
#: Mode bits that must be clear on the default socket directory: nobody else may add or swap a socket.
UNSAFE_DIR_BITS = stat.S_IWGRP | stat.S_IWOTH


def implicit_socket_path() -> Path:
    """$XDG_RUNTIME_DIR/drawstate.sock, else /tmp/drawstate-<uid>/drawstate.sock: the path nobody chose."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / SOCKET_NAME
    return Path(f"/tmp/drawstate-{os.getuid()}") / SOCKET_NAME


def default_socket_path() -> Path:
    """$DRAWSTATE_SOCKET, else $XDG_RUNTIME_DIR/drawstate.sock, else /tmp/drawstate-<uid>/drawstate.sock."""
    explicit = os.environ.get(SOCKET_ENV)
    if explicit:
        return Path(explicit)
    return implicit_socket_path()


def unsafe_socket_dir(directory: Path) -> str | None:
    """Why `directory` must not hold a default socket, or None when only this user can change it.

    A missing directory is not unsafe (the daemon creates it 0700; a client's
    connect simply fails). A symlink is refused: lstat, never stat, so a link
    to a directory someone else controls does not pass as ours.
    """
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return f"socket directory {directory} is not a directory (a symlink or a file)"
    if info.st_uid != os.getuid():
        return f"socket directory {directory} is owned by uid {info.st_uid}, not by this user ({os.getuid()})"
    if info.st_mode & UNSAFE_DIR_BITS:
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"socket directory {directory} can be written by group or others (mode {mode:04o}); chmod 0700 it"
        )
    return None
