"""The blocking client says whether a failed call may have taken effect: SidecarTimeout or SidecarUnavailable.

A scripted peer on a unix socket (not a daemon) reads the request, then breaks the connection
and stops listening, so the client's one resend finds nobody: the first attempt went out, so the
outcome is in doubt.
"""

from __future__ import annotations

import socket
import tempfile
import threading
from pathlib import Path

import pytest

from drawstate import Client, SidecarTimeout, SidecarUnavailable


def test_a_request_that_went_out_before_the_daemon_vanished_is_in_doubt_not_unavailable():
    directory = Path(tempfile.mkdtemp(prefix="dsu-", dir="/tmp"))
    path = directory / "peer.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    received = threading.Event()

    def peer() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)  # the request arrived: it may have been applied
        received.set()
        listener.close()
        path.unlink()  # nobody to reconnect to
        conn.close()

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    with Client(path, timeout=2.0) as client, pytest.raises(SidecarTimeout):
        client.ping()
    assert received.is_set()
    thread.join(5)


def test_a_request_that_never_went_out_is_unavailable_not_in_doubt():
    path = Path(tempfile.mkdtemp(prefix="dsu-", dir="/tmp")) / "nobody.sock"
    with Client(path, timeout=1.0) as client, pytest.raises(SidecarUnavailable) as caught:
        client.ping()
    assert not isinstance(caught.value, SidecarTimeout)
