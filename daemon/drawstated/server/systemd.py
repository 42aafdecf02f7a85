"""systemd glue without libsystemd: sd_notify datagrams and socket activation (LISTEN_FDS).

Both are no-ops when systemd did not ask for them, so the daemon runs the same
from a shell, a container or a unit.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("drawstated.server.systemd")

SD_LISTEN_FDS_START = 3


def notify(*states: str) -> bool:
    """Send e.g. "READY=1", "STATUS=..." to $NOTIFY_SOCKET; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(states).encode(), address)
    except OSError as exc:
        log.warning("sd_notify failed", extra={"error": str(exc)})
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Half of WATCHDOG_USEC when the watchdog is on for this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def listen_socket() -> socket.socket | None:
    """The first socket passed by socket activation, if it was passed to this process."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0"))
    if count < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for our children (the embedded redis)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    sock.setblocking(False)
    os.set_inheritable(sock.fileno(), False)
    return sock
