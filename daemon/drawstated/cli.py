"""The `drawstate` command: `serve` runs the daemon; the rest talk to a running one.

Click only parses: `serve` builds a Config and hands it to server.run; the
client-side commands (ping, load, pending, rollback, stats, audit) live in
cli_client.py and call the blocking Client. Every option also reads DRAWSTATE_<OPTION>.
"""

from __future__ import annotations

from pathlib import Path
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
    socket_option,
)
from drawstated.cli_client import env as _env
from drawstated.config import (
    AUDIT_MAXLEN,
    DEFAULT_DEADLINE_MS,
    DEFAULT_PREFIX,
    DEFAULT_TTL_S,
    MAX_CONNECTIONS,
    MAX_INFLIGHT_PER_CONNECTION,
    REDIS_POOL_SIZE,
    SOCKET_MODE,
    Config,
    default_data_dir,
    password_from_env,
)

__all__ = ["EXIT_NONE", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="drawstate")
def main() -> None:
    """drawstate: keep multi-draw progress safe in Redis through a local sidecar."""


@main.command()
@socket_option
@click.option(
    "--redis-url",
    envvar=_env("REDIS_URL"),
    help="redis://, rediss:// or unix:// URL. Omit to run an embedded redis-server. "
    "Put no password here: use DRAWSTATE_REDIS_PASSWORD(_FILE).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=_env("DATA_DIR"),
    default=default_data_dir,
    help="Embedded Redis data and the rollback journal.",
)
@click.option("--prefix", default=DEFAULT_PREFIX, envvar=_env("PREFIX"), help="Redis key prefix.")
@click.option(
    "--ttl",
    "ttl_s",
    type=click.IntRange(1),
    default=DEFAULT_TTL_S,
    envvar=_env("TTL"),
    help="Seconds a state lives after its last save.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar=_env("LOG_FORMAT"))
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    envvar=_env("LOG_LEVEL"),
)
@click.option(
    "--deadline-ms",
    type=click.IntRange(1),
    default=DEFAULT_DEADLINE_MS,
    envvar=_env("DEADLINE_MS"),
    help="Deadline of a request that names none.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=MAX_CONNECTIONS,
    envvar=_env("MAX_CONNECTIONS"),
)
@click.option(
    "--max-inflight",
    type=click.IntRange(1),
    default=MAX_INFLIGHT_PER_CONNECTION,
    envvar=_env("MAX_INFLIGHT"),
    help="Requests in flight per connection before reading pauses.",
)
@click.option(
    "--socket-mode",
    default=f"{SOCKET_MODE:o}",
    envvar=_env("SOCKET_MODE"),
    help="Octal mode of the socket; never world-accessible.",
)
@click.option("--socket-group", envvar=_env("SOCKET_GROUP"), help="Group owning the socket.")
@click.option(
    "--allow-uid",
    "allow_uids",
    type=int,
    multiple=True,
    envvar=_env("ALLOW_UID"),
    help="Peer uid allowed to connect (repeatable). Default: anyone the socket mode allows.",
)
@click.option("--redis-username", envvar=_env("REDIS_USERNAME"))
@click.option(
    "--redis-pool-size",
    type=click.IntRange(1),
    default=REDIS_POOL_SIZE,
    envvar=_env("REDIS_POOL_SIZE"),
)
@click.option("--audit-maxlen", type=click.IntRange(1), default=AUDIT_MAXLEN, envvar=_env("AUDIT_MAXLEN"))
@click.option(
    "--durability",
    type=click.Choice(["ack", "replicated"]),
    default="ack",
    envvar=_env("DURABILITY"),
    help="Durability of saves that do not say.",
)
@click.option(
    "--min-replicas",
    type=click.IntRange(0),
    default=1,
    envvar=_env("MIN_REPLICAS"),
    help="Replicas that must acknowledge a replicated save.",
)
def serve(
    socket_path: Path | None,
    socket_mode: str,
    allow_uids: tuple[int, ...],
    log_format: str,
    log_level: str,
    **options: Any,
) -> None:
    """Run the daemon (also: python -m drawstated)."""
    from drawstated.logs import setup_logging  # noqa: PLC0415  # serve-only imports stay off the client commands
    from drawstated.server import run  # noqa: PLC0415

    try:
        if socket_path:
            options["socket_path"] = socket_path
        config = Config(
            socket_mode=int(socket_mode, 8),
            allowed_uids=frozenset(allow_uids) if allow_uids else None,
            redis_password=password_from_env(),
            log_format=log_format,
            log_level=log_level.upper(),
            ttl_s=options.pop("ttl_s"),
            default_deadline_ms=options.pop("deadline_ms"),
            max_inflight_per_connection=options.pop("max_inflight"),
            **options,
        )
    except (ValueError, OSError) as exc:
        raise click.UsageError(str(exc)) from exc
    setup_logging(config.log_format, config.log_level)
    run(config)


for _command in COMMANDS:
    main.add_command(_command)
