"""The `drawstate` command: `serve` runs the daemon; the rest talk to a running one.

Click only parses: `serve` builds a Config and hands it to server.run; the
client-side commands (ping, load, pending, rollback, stats, audit) live in
cli_client.py and call the blocking Client. Every option also reads DRAWSTATE_<OPTION>.
"""

from __future__ import annotations

from typing import Any

import click

from drawstated import __version__
from drawstated.cli_client import (
    COMMANDS,
    EXIT_NONE,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from drawstated.options import add_serve_options, config_from_options

__all__ = ["EXIT_NONE", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="drawstate")
def main() -> None:
    """drawstate: keep multi-draw progress safe in Redis through a local sidecar."""


@main.command()
@add_serve_options
def serve(**values: Any) -> None:
    """Run the daemon (also: python -m drawstated)."""
    from drawstated.logs import setup_logging  # noqa: PLC0415  # serve-only imports stay off the client commands
    from drawstated.server import run  # noqa: PLC0415

    try:
        config = config_from_options(values)
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    setup_logging(config.log_format, config.log_level)
    run(config)


for _command in COMMANDS:
    main.add_command(_command)
