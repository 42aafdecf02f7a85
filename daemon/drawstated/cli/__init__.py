"""The `drawstate` command: `serve` runs the daemon; the rest talk to a running one.

Click only parses: `serve` builds a Config and hands it to server.run; the
client-side commands (ping, load, pending, rollback, stats, audit) live in
cli_client.py and call the blocking Client. Every option also reads DRAWSTATE_<OPTION>.
A failure `serve` expects at start-up (startup.py) is one line on stderr and its exit code.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

import click

from drawstated import __version__
from drawstated.cli.client import (
    COMMANDS,
    EXIT_NONE,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from drawstated.cli.importing import import_legacy
from drawstated.cli.operator import OPERATOR_COMMANDS
from drawstated.config import PASSWORD_FILE_ENV, Config
from drawstated.options import add_serve_options, config_from_options
from drawstated.server.startup import BadConfig, EmbeddedRedisFailed, PasswordFileUnreadable, StartupError

__all__ = ["EXIT_NONE", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="drawstate")
def main() -> None:
    """drawstate: keep multi-draw progress safe in Redis through a local sidecar."""


@main.command()
@add_serve_options
def serve(**values: Any) -> None:
    """Run the daemon (also: python -m drawstated)."""
    from drawstated.logs import setup_logging  # noqa: PLC0415
    from drawstated.server.embedded import EmbeddedRedisError  # noqa: PLC0415  # serve-only imports stay off the client commands
    from drawstated.server.locks import PRIVATE_UMASK  # noqa: PLC0415
    from drawstated.server.process import run  # noqa: PLC0415

    try:
        config = _serve_config(values)
        os.umask(PRIVATE_UMASK)  # what the daemon and its embedded Redis create is private
        setup_logging(config.log_format, config.log_level)
        try:
            run(config)
        except EmbeddedRedisError as exc:
            raise EmbeddedRedisFailed(str(exc)) from exc
    except StartupError as exc:
        _startup_failed(exc)


def _serve_config(values: dict[str, Any]) -> Config:
    try:
        config = config_from_options(values)
    except ValueError as exc:
        raise BadConfig(f"bad configuration: {exc}") from exc
    except OSError as exc:  # the password file is the only file read here
        raise PasswordFileUnreadable(
            f"cannot read the Redis password file ${PASSWORD_FILE_ENV} names ({exc.filename}): {exc.strerror}"
        ) from exc
    try:
        config.redis_ssl_context()  # read the TLS files now: a missing one is a bad config, not a traceback
    except OSError as exc:  # ssl.SSLError included
        raise BadConfig(f"cannot load the Redis TLS files: {exc}") from exc
    return config


def _startup_failed(exc: StartupError) -> NoReturn:
    click.echo(f"drawstate serve: {exc}", err=True)
    sys.exit(exc.exit_code)


for _command in (*COMMANDS, *OPERATOR_COMMANDS, import_legacy):
    main.add_command(_command)
