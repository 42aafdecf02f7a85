"""One blocking connection to the daemon: a request frame out, the reply with its id back.

Opening one checks the default socket directory first (paths.py: a directory another user
could have planted the socket in is refused); an explicitly configured path is the operator's
choice. A connection whose call timed out is closed, never reused: a late reply would arrive
out of step with the next call.
"""

from __future__ import annotations

import itertools
import socket
import time
from pathlib import Path
from typing import Any

from drawstate.errors import InternalError, SidecarTimeout, SidecarUnavailable
from drawstate.paths import SOCKET_ENV, unsafe_socket_dir
from drawstate.protocol import FrameBuffer, FrameError, decode_body, encode_frame

_RECV_CHUNK = 256 * 1024


def no_daemon(path: str, reason: object) -> SidecarUnavailable:
    """The error for a daemon that is not there, saying how to get one."""
    return SidecarUnavailable(
        f"no drawstate daemon answers at {path} ({reason}): start one with `drawstate serve`, "
        f"or set {SOCKET_ENV} to the socket of the one you run"
    )


class Connection:
    """A connected unix socket to the daemon, used by one call at a time."""

    def __init__(self, path: str, default_dir: Path | None, max_frame_bytes: int, deadline: float) -> None:
        if default_dir is not None and (problem := unsafe_socket_dir(default_dir)):
            raise SidecarUnavailable(f"refusing to connect to {path}: {problem}")
        self.path = path
        self._frames = FrameBuffer(max_frame_bytes)
        self._ids = itertools.count(1)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(path)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise no_daemon(path, getattr(exc, "strerror", None) or exc) from exc
        self._sock: socket.socket | None = sock

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def round_trip(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Send `request` (its id and remaining deadline set here) and return the reply to it.

        OSError: the connection broke (the caller may resend on a new one). SidecarTimeout: no
        reply in time (this connection is closed). InternalError: the daemon sent a bad frame.
        """
        sock = self._sock
        if sock is None:
            raise ConnectionResetError("connection closed")
        request_id = next(self._ids)
        request["id"] = request_id
        request["deadline_ms"] = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.sendall(encode_frame(request))
            while True:
                for body in self._frames.frames():
                    reply = decode_body(body)
                    if isinstance(reply, dict) and reply.get("id") == request_id:
                        return reply
                    if isinstance(reply, dict) and reply.get("id") is None and not reply.get("ok"):
                        return reply  # the daemon could not read our id (e.g. frame too large)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(_RECV_CHUNK)
                if not chunk:
                    raise ConnectionResetError("daemon closed the connection")
                self._frames.feed(chunk)
        except TimeoutError as exc:
            self.close()
            raise SidecarTimeout(
                f"no reply from the daemon at {self.path} within the call timeout; the request may have "
                "taken effect: resend it unchanged"
            ) from exc
        except OSError:
            self.close()
            raise
        except FrameError as exc:
            self.close()
            raise InternalError(f"bad frame from daemon: {exc}") from exc
