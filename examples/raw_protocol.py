"""A drawstate client written against the wire protocol alone: standard library + msgpack.

It does not import `drawstate`: it is the reference for a client in another
language (docs/protocol.md describes every byte). It connects to a running
daemon, pings it, saves an operation (and repeats that save, to show the token
making the repeat a no-op), loads it, pipelines three loads and matches their
replies by id, then completes the operation so nothing is left behind.

    drawstate serve &                        # or any running daemon
    DRAWSTATE_SOCKET=/path/to/sock python examples/raw_protocol.py
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import Any

import msgpack

#: Every frame: a 4-byte big-endian unsigned body length, then one msgpack map.
HEADER = struct.Struct(">I")
#: The daemon's default frame cap; a reply is never bigger, so a bigger length means a broken stream.
MAX_FRAME_BYTES = 1024 * 1024
#: What we tell the daemon we will wait; it answers (or says deadline_exceeded) before then.
DEADLINE_MS = 1000


def default_socket_path() -> str:
    """$DRAWSTATE_SOCKET, else $XDG_RUNTIME_DIR/drawstate.sock, else /tmp/drawstate-<uid>/drawstate.sock."""
    explicit = os.environ.get("DRAWSTATE_SOCKET")
    if explicit:
        return explicit
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "drawstate.sock")
    return f"/tmp/drawstate-{os.getuid()}/drawstate.sock"


class DaemonError(Exception):
    """An `ok: false` reply: `code` is the wire code; `details` holds extra fields (stored_version, ...)."""

    def __init__(self, error: dict[str, Any]) -> None:
        self.code = str(error.get("code", "internal"))
        self.retryable = bool(error.get("retryable", False))
        self.details = {k: v for k, v in error.items() if k not in ("code", "message", "retryable")}
        super().__init__(f"{self.code}: {error.get('message', '')}")


class RawConnection:
    """One socket; requests carry increasing ids; replies are matched by id, in whatever order they come."""

    def __init__(self, path: str, timeout_s: float = DEADLINE_MS / 1000 + 1.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        self.sock.connect(path)
        self.buffer = bytearray()
        self.ids = itertools.count(1)
        #: Replies read while waiting for another id.
        self.unclaimed: dict[int, dict[str, Any]] = {}

    def close(self) -> None:
        self.sock.close()

    def send(self, op: str, **fields: Any) -> int:
        """Write one request frame; returns its id. Does not wait for the reply."""
        request_id = next(self.ids)
        message = {"id": request_id, "op": op, "deadline_ms": DEADLINE_MS, **fields}
        body = msgpack.packb(message, use_bin_type=True)  # str as msgpack str, never bin
        # One whole frame per write: the daemon closes connections that sit on half a frame.
        self.sock.sendall(HEADER.pack(len(body)) + body)
        return request_id

    def read_frame(self) -> dict[str, Any]:
        """Block until one complete reply frame is buffered; decode it."""
        while True:
            if len(self.buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self.buffer)
                if length > MAX_FRAME_BYTES:
                    raise ConnectionError(f"reply frame of {length} bytes: stream out of sync")
                end = HEADER.size + length
                if len(self.buffer) >= end:
                    body = bytes(self.buffer[HEADER.size : end])
                    del self.buffer[:end]
                    reply = msgpack.unpackb(body, raw=False)
                    if not isinstance(reply, dict):
                        raise ConnectionError("reply is not a msgpack map")
                    return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("daemon closed the connection")
            self.buffer += chunk

    def wait_for(self, request_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The replies of `request_ids`, read in any order; other ids are kept for later."""
        wanted = set(request_ids)
        replies = {i: self.unclaimed.pop(i) for i in wanted & self.unclaimed.keys()}
        while len(replies) < len(wanted):
            reply = self.read_frame()
            reply_id = reply.get("id")
            if reply_id is None:
                # The daemon could not read some request's id (malformed frame, or a refused
                # connection): it cannot be matched, so report it rather than guess.
                raise DaemonError(reply.get("error") or {})
            if reply_id in wanted:
                replies[reply_id] = reply
            else:
                self.unclaimed[reply_id] = reply
        return replies

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request and return its ok reply; an error reply raises DaemonError."""
        request_id = self.send(op, **fields)
        return checked(self.wait_for([request_id])[request_id])


def checked(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok") is True:
        return reply
    raise DaemonError(reply.get("error") or {})


def new_operation_id() -> str:
    """YYYYMMDD_HHMMSS_<8 hex>, UTC: the format the Python client makes."""
    return time.strftime("%Y%m%d_%H%M%S", time.gmtime()) + "_" + secrets.token_hex(4)


def demo(conn: RawConnection) -> None:
    pong = conn.call("ping")
    print(f"ping: daemon {pong['version']}, redis {pong['redis']}")

    now = int(time.time())
    lock_key = f"example:raw-protocol:{os.getpid()}"
    state: dict[str, Any] = {
        "lock_key": lock_key,
        "operation_id": new_operation_id(),
        "total_count": 3,
        "completed_count": 0,
        "start_time": now,
        "last_update_time": now,
        "metadata": {"banner": "demo"},
    }
    token = secrets.token_hex(8)  # one token per logical save, reused on its retries
    saved = conn.call("save", state=state, token=token, expect_version=0)
    print(f"save: version {saved['version']}, ttl {saved['ttl_s']} s")
    again = conn.call("save", state=state, token=token, expect_version=0)
    print(f"save repeated with the same token: version {again['version']} (nothing written)")

    state.update(completed_count=1, results=[7], last_update_time=int(time.time()))
    saved = conn.call("save", state=state, token=secrets.token_hex(8), expect_version=saved["version"])
    print(f"save after one draw: version {saved['version']}")

    loaded = conn.call("load", lock_key=lock_key, operation_id=state["operation_id"])["state"]
    print(f"load: completed {loaded['completed_count']}/{loaded['total_count']}, results {loaded['results']}")

    # Pipelining: three requests written back to back, replies matched by id.
    by_id = conn.send("load", lock_key=lock_key, operation_id=state["operation_id"])
    newest = conn.send("load", lock_key=lock_key)
    unknown = conn.send("load", lock_key=lock_key, operation_id="no_such_operation")
    replies = conn.wait_for([by_id, newest, unknown])
    for label, request_id in (("by id", by_id), ("newest", newest), ("unknown", unknown)):
        found = checked(replies[request_id])["state"]
        shown = "nil" if found is None else f"{found['operation_id']} v{found['version']}"
        print(f"pipelined load #{request_id} ({label}): {shown}")

    done = conn.call("complete", lock_key=lock_key, operation_id=state["operation_id"])
    print(f"complete: existed {done['existed']}")
    try:
        conn.call("save", state=state, token=secrets.token_hex(8))
    except DaemonError as exc:
        print(f"save after complete refused: {exc} (retryable {exc.retryable})")


def main() -> int:
    path = default_socket_path()
    try:
        conn = RawConnection(path)
    except OSError as exc:
        print(f"cannot reach the drawstate daemon at {path}: {exc}", file=sys.stderr)
        return 3
    try:
        demo(conn)
    except DaemonError as exc:
        print(f"daemon error: {exc} {exc.details or ''}", file=sys.stderr)
        return 3 if exc.retryable else 4
    except OSError as exc:  # ConnectionError and socket timeouts included
        print(f"connection lost: {exc}", file=sys.stderr)
        return 3
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
