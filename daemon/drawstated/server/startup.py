"""The failures `drawstate serve` expects at start-up, each with its own named exit code.

Each is printed as one line on stderr, never a traceback: nothing is wrong
with the daemon, something around it needs the operator. The exit code tells a
supervisor which without parsing text; codes follow sysexits.h where one fits,
and 1 means "another daemon already runs here", as for most daemons that hold a
lock. The systemd unit's RestartPreventExitStatus lists those a restart cannot fix.
"""

from __future__ import annotations

from typing import ClassVar

#: The data dir or the socket path is locked by another running daemon.
EXIT_ALREADY_RUNNING = 1
#: DRAWSTATE_REDIS_PASSWORD_FILE names a file that cannot be read (EX_NOINPUT).
EXIT_PASSWORD_FILE = 66
#: The embedded redis-server is missing or did not start (EX_UNAVAILABLE).
EXIT_EMBEDDED_REDIS = 69
#: --socket names an existing file that is not a socket; it is left alone (EX_CANTCREAT).
EXIT_NOT_A_SOCKET = 73
#: The data dir, the socket's directory or a lock file cannot be created or opened (EX_IOERR).
EXIT_FILESYSTEM = 74
#: Some other process listens on --socket without holding its lock (EX_TEMPFAIL).
EXIT_SOCKET_IN_USE = 75
#: The default socket directory is owned by another user or writable by others (EX_NOPERM).
EXIT_UNSAFE_SOCKET_DIR = 77
#: The configuration is invalid, e.g. Sentinel without a master name or an unknown group (EX_CONFIG).
EXIT_BAD_CONFIG = 78


class StartupError(Exception):
    """A start-up failure the operator must fix; str() is the one line printed."""

    exit_code: ClassVar[int] = EXIT_BAD_CONFIG


class AlreadyRunning(StartupError):
    exit_code = EXIT_ALREADY_RUNNING


class PasswordFileUnreadable(StartupError):
    exit_code = EXIT_PASSWORD_FILE


class EmbeddedRedisFailed(StartupError):
    exit_code = EXIT_EMBEDDED_REDIS


class NotASocket(StartupError):
    exit_code = EXIT_NOT_A_SOCKET


class CannotCreate(StartupError):
    exit_code = EXIT_FILESYSTEM


class SocketInUse(StartupError):
    exit_code = EXIT_SOCKET_IN_USE


class UnsafeSocketDir(StartupError):
    exit_code = EXIT_UNSAFE_SOCKET_DIR


class BadConfig(StartupError):
    exit_code = EXIT_BAD_CONFIG
