"""A raw protocol peer: frames sent and read by hand, to test what the Client never sends."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import msgpack

from drawstate.protocol import FrameBuffer, decode_body, encode_frame


class RawPeer:
    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.frames = FrameBuffer(64 * 1024 * 1024)
        self._pending: list[bytes] = []

    def send(self, message: Any) -> None:
        body = msgpack.packb(message, use_bin_type=True)
        self.sock.sendall(struct.pack(">I", len(body)) + body)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        self.sock.sendall(encode_frame(message))
        return self.read()

    def read(self) -> dict[str, Any]:
        while not self._pending:
            self._pending.extend(self.frames.frames())
            if self._pending:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by daemon")
            self.frames.feed(chunk)
        reply = decode_body(self._pending.pop(0))
        assert isinstance(reply, dict)
        return reply

    def closed_by_peer(self) -> bool:
        """True once the daemon has closed its end (reads EOF)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()
