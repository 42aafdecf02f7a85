"""One daemon per data dir and per socket path: exclusive flocks taken before anything else.

Without them a second `drawstate serve` on the same data dir starts a second
redis-server on the same AOF file, and on exit removes the first one's
redis.sock; a second one on the same socket path replaces the first one's
socket. flock, not a pid file: the kernel drops the lock when its holder dies,
however it dies, so a crash never leaves a stale lock to clean up. The lock
files hold the holder's pid for the message the next daemon prints, and are
never removed (removing one would let two daemons lock two different files
under one name).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path

from drawstate.paths import implicit_socket_path, unsafe_socket_dir
from drawstated.config import default_data_dir
from drawstated.server.startup import AlreadyRunning, CannotCreate, NotASocket, SocketInUse, UnsafeSocketDir

log = logging.getLogger("drawstated.server.locks")

DATA_LOCK_NAME = "drawstated.lock"
SOCKET_LOCK_SUFFIX = ".lock"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: The daemon's umask: what it and its embedded redis-server create (journal, AOF) is private.
PRIVATE_UMASK = 0o077
#: A listener that does not accept a probe connection within this long still counts as live.
PROBE_TIMEOUT_S = 1.0
#: Longest pid text read back from a lock file.
_PID_READ_BYTES = 32


def socket_lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + SOCKET_LOCK_SUFFIX)


def _holder(fd: int) -> str:
    text = os.pread(fd, _PID_READ_BYTES, 0).decode(errors="replace").strip()
    return text if text.isdigit() else "unknown"  # it may not have written its pid yet


def _lock(path: Path, what: str) -> int:
    """An fd holding an exclusive flock on `path` with our pid in it; AlreadyRunning if another has it."""
    try:
        # O_NOFOLLOW: in a directory others can write to, a symlink must not redirect the pid write.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise CannotCreate(f"cannot open lock file {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise AlreadyRunning(f"{what} is in use by drawstate daemon pid {holder} (it holds {path})") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as exc:  # the lock holds without it; only the next daemon's message loses the pid
        log.warning(
            "could not write the pid into the lock file", extra={"path": str(path), "error": str(exc)}
        )
    return fd


def _make_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        raise CannotCreate(f"{what} {path} exists and is not a directory") from None
    except OSError as exc:
        raise CannotCreate(f"cannot create {what} {path}: {exc.strerror}") from None


def _prepare_data_dir(data_dir: Path) -> None:
    """Create the data dir 0700, and keep the default one 0700; warn about any other that others can reach.

    The default data dir is drawstate's own, so one an older version left open (0755, say) is made
    private again. A dir the operator chose (a shared volume, say) keeps the mode its owner gave it,
    with a warning when group or others can read it (the journal, the embedded Redis's states and
    their metadata) or write to it (replace the journal).
    """
    _make_dir(data_dir, "data dir")
    info = data_dir.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return
    if data_dir == default_data_dir() and info.st_uid == os.geteuid():
        data_dir.chmod(0o700)
        log.warning(
            "default data dir was open to group or others; made it 0700",
            extra={"data_dir": str(data_dir), "mode": f"{mode:04o}"},
        )
        return
    who = "written" if mode & (stat.S_IWGRP | stat.S_IWOTH) else "read"
    log.warning(
        f"data dir can be {who} by group or others (the journal, the embedded Redis's data); chmod 0700 it",
        extra={"data_dir": str(data_dir), "mode": f"{mode:04o}"},
    )


def _prepare_socket_dir(socket_path: Path) -> None:
    """Create the socket's directory 0700; refuse the default one if someone else could change it."""
    directory = socket_path.parent
    _make_dir(directory, "socket directory")
    if socket_path == implicit_socket_path():
        problem = unsafe_socket_dir(directory)
        if problem:
            raise UnsafeSocketDir(f"refusing to listen: {problem}")


def claim_socket_path(path: Path) -> None:
    """Make `path` free to bind: remove a stale socket, refuse a live one or any other kind of file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise NotASocket(
            f"{path} exists and is not a socket; refusing to replace it (move it or choose another --socket)"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_TIMEOUT_S)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale: left by a daemon that did not stop cleanly
        return
    except (BlockingIOError, TimeoutError):
        pass  # a listener whose backlog is full is live all the same
    except OSError as exc:
        raise SocketInUse(
            f"cannot probe the socket at {path} ({exc.strerror}); refusing to replace it"
        ) from None
    finally:
        probe.close()
    raise SocketInUse(f"another process is listening on {path}; stop it or choose another --socket")


class DaemonLocks:
    """The flocks one running daemon holds; release them once its socket and its Redis are gone."""

    def __init__(self) -> None:
        self._fds: list[int] = []

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def acquire(self, data_dir: Path, socket_path: Path | None) -> None:
        """Lock the data dir, then (unless systemd passed the socket: None) the socket path.

        Everything a second daemon could disturb comes after the locks, so one
        that fails here has started nothing and changed nothing.
        """
        fds: list[int] = []
        try:
            _prepare_data_dir(data_dir)
            fds.append(_lock(data_dir / DATA_LOCK_NAME, f"data dir {data_dir}"))
            if socket_path is not None:
                _prepare_socket_dir(socket_path)
                fds.append(_lock(socket_lock_path(socket_path), f"socket {socket_path}"))
                claim_socket_path(socket_path)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._fds = fds

    def release(self) -> None:
        """Drop the locks; the pids go first so a reader never sees ours on a lock nobody holds."""
        fds, self._fds = self._fds, []
        for fd in reversed(fds):
            with contextlib.suppress(OSError):  # e.g. a full disk; the flock goes with the close anyway
                os.ftruncate(fd, 0)
            os.close(fd)
