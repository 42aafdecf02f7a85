"""The `drawstate` command: `serve` runs the daemon; the rest talk to a running one.

Click only parses: `serve` builds a Config and hands it to server.run, the
others call the blocking Client. Every option also reads DRAWSTATE_<OPTION>.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click
import orjson

from drawstate import Client, DrawStateError, SidecarUnavailable
from drawstate.client import DEFAULT_TIMEOUT_S
from drawstated import __version__
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

EXIT_OK = 0
#: load found no state / ping found Redis down.
EXIT_NONE = 1
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_UNAVAILABLE = 3
EXIT_REFUSED = 4


def _env(name: str) -> str:
    return f"DRAWSTATE_{name}"


socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=_env("SOCKET"),
    help="Daemon socket. [default: $XDG_RUNTIME_DIR/drawstate.sock or /tmp/drawstate-<uid>/]",
)
timeout_option = click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT_S * 5,
    envvar=_env("TIMEOUT"),
    show_default=True,
    help="Seconds to wait for the daemon.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


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


def _client(socket_path: Path | None, timeout: float) -> Client:
    return Client(socket_path, timeout=timeout)


def _fail(exc: DrawStateError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_UNAVAILABLE if exc.retryable else EXIT_REFUSED)


def _print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@main.command()
@socket_option
@timeout_option
def ping(socket_path: Path | None, timeout: float) -> None:
    """Exit 0 when the daemon answers and its Redis is up."""
    try:
        with _client(socket_path, timeout) as client:
            reply = client.ping()
    except DrawStateError as exc:
        _fail(exc)
        return
    click.echo(f"daemon {reply['version']}: redis {reply['redis']}")
    sys.exit(EXIT_OK if reply["redis"] == "up" else EXIT_NONE)


@main.command()
@socket_option
@timeout_option
@click.argument("lock_key")
@click.argument("operation_id", required=False)
def load(socket_path: Path | None, timeout: float, lock_key: str, operation_id: str | None) -> None:
    """Print an operation's state as JSON (the newest of LOCK_KEY without OPERATION_ID)."""
    try:
        with _client(socket_path, timeout) as client:
            state = client.load(lock_key, operation_id)
    except DrawStateError as exc:
        _fail(exc)
        return
    if state is None:
        click.echo("no live operation", err=True)
        sys.exit(EXIT_NONE)
    _print_json(state.to_dict())


@main.command()
@socket_option
@timeout_option
@click.option("--lock-key", help="Only this lock key's operations.")
@click.option(
    "--older-than",
    "older_than_s",
    type=click.IntRange(0),
    help="Only operations not saved for this many seconds.",
)
@json_option
def pending(
    socket_path: Path | None,
    timeout: float,
    lock_key: str | None,
    older_than_s: int | None,
    as_json: bool,
) -> None:
    """List live operations: interrupted ones are those not saved for a while."""
    try:
        with _client(socket_path, timeout) as client:
            items = list(client.iter_pending(lock_key, older_than_s=older_than_s))
    except DrawStateError as exc:
        _fail(exc)
        return
    if as_json:
        _print_json([dataclasses.asdict(item) for item in items])
        return
    if not items:
        click.echo("no pending operations")
        return
    click.echo(f"{'LOCK KEY':<30} {'OPERATION':<26} {'DRAWS':>9} {'VERSION':>7} {'IDLE':>8}")
    for item in items:
        draws = f"{item.completed_count}/{item.total_count}"
        click.echo(
            f"{item.lock_key:<30} {item.operation_id:<26} {draws:>9} {item.version:>7} {item.age_s:>7}s"
        )


@main.command()
@socket_option
@timeout_option
@click.argument("lock_key")
@click.argument("operation_id")
@click.option("--reason", default="manual rollback", help="Recorded in the audit trail.")
def rollback(socket_path: Path | None, timeout: float, lock_key: str, operation_id: str, reason: str) -> None:
    """Roll an operation back and print what it had granted (for the refund)."""
    try:
        with _client(socket_path, timeout) as client:
            result = client.rollback(lock_key, operation_id, reason=reason)
    except DrawStateError as exc:
        _fail(exc)
        return
    _print_json({"cleanup": result.cleanup, "state": result.state.to_dict() if result.state else None})


@main.command()
@socket_option
@timeout_option
@json_option
def stats(socket_path: Path | None, timeout: float, as_json: bool) -> None:
    """Counters, latency percentiles and Redis status of the daemon."""
    try:
        with _client(socket_path, timeout) as client:
            reply = client.stats()
    except SidecarUnavailable as exc:
        _fail(exc)
        return
    reply.pop("id", None)
    reply.pop("ok", None)
    if as_json:
        _print_json(reply)
        return
    click.echo(
        f"redis: {reply['redis']}   uptime: {reply['uptime_s']} s   "
        f"connections: {reply['connections']}   in flight: {reply['in_flight']}"
    )
    click.echo(
        f"batches: {reply['batches']} (mean {reply['mean_batch']}, max {reply['max_batch']})   "
        f"redis retries: {reply['redis_retries']}   deferred rollbacks: {reply['deferred_rollbacks']}"
    )
    for op, codes in sorted(reply["requests"].items()):
        latency = reply["latency"].get(op, {})
        counts = ", ".join(f"{code}={n}" for code, n in sorted(codes.items()))
        pcts = " ".join(f"{k.removesuffix('_ms')}={v}ms" for k, v in latency.items())
        click.echo(f"  {op:<9} {counts:<40} {pcts}")
