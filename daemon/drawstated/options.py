"""The options of `drawstate serve`: one table, from which the CLI, the env vars and the docs come.

Each row names a Config field; its default is the Config's own, so the CLI,
Python callers and docs/operations.md can never disagree. Every option also
reads DRAWSTATE_<OPTION> (e.g. --redis-url ↔ DRAWSTATE_REDIS_URL). Secrets have
no option at all: the Redis password comes from DRAWSTATE_REDIS_PASSWORD or
the file named by DRAWSTATE_REDIS_PASSWORD_FILE.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from drawstate.limits import Limits
from drawstate.protocol import DURABILITIES
from drawstated.config import Config, password_from_env

_DIR = click.Path(file_okay=False, path_type=Path)
_FILE = click.Path(dir_okay=False, path_type=Path)


def _comma_separated(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Option:
    flag: str
    field: str  # a Config field, or "limits.<field>"
    help: str
    type: Any = str
    convert: Callable[[Any], Any] | None = None
    multiple: bool = False

    @property
    def envvar(self) -> str:
        return "DRAWSTATE_" + self.flag.removeprefix("--").upper().replace("-", "_")

    def default(self) -> Any:
        """The Config's default for this field (what applies when the option is not given)."""
        owner: Any = Limits if self.field.startswith("limits.") else Config
        name = self.field.removeprefix("limits.")
        for item in dataclasses.fields(owner):
            if item.name == name:
                if item.default_factory is not dataclasses.MISSING:
                    return item.default_factory()
                return item.default
        raise KeyError(self.field)

    def shown_default(self) -> str:
        value = self.default()
        if self.field == "socket_mode":
            return f"{value:o}"
        if value in (None, ()):
            return "none"
        return str(value)


SERVE_OPTIONS = (
    Option("--socket", "socket_path", "Unix socket to listen on.", _FILE),
    Option(
        "--redis-url",
        "redis_url",
        "redis://, rediss:// or unix:// URL; none runs an embedded redis-server. Never put a password here.",
    ),
    Option(
        "--redis-sentinel",
        "redis_sentinels",
        "Sentinel addresses, host:port,host:port.",
        str,
        _comma_separated,
    ),
    Option("--sentinel-master", "sentinel_master", "Name of the master the sentinels watch."),
    Option(
        "--redis-cluster", "redis_cluster", "Cluster seed nodes, host:port,host:port.", str, _comma_separated
    ),
    Option("--redis-username", "redis_username", "Redis ACL user (the password comes from the environment)."),
    Option("--redis-tls-ca", "redis_tls_ca", "CA bundle trusted for rediss://.", _FILE),
    Option("--redis-tls-cert", "redis_tls_cert", "Client certificate for rediss://.", _FILE),
    Option("--redis-tls-key", "redis_tls_key", "Key of the client certificate.", _FILE),
    Option("--redis-pool-size", "redis_pool_size", "Redis connections per server.", click.IntRange(1)),
    Option(
        "--redis-socket-timeout",
        "redis_socket_timeout_s",
        "Seconds a Redis connection may stay silent with replies owed before it is dropped.",
        click.FloatRange(0.01),
    ),
    Option("--data-dir", "data_dir", "Embedded Redis data and the journal of deferred rollbacks.", _DIR),
    Option("--prefix", "prefix", "Redis key prefix."),
    Option("--ttl", "ttl_s", "Seconds a state lives after its last save.", click.IntRange(1)),
    Option("--max-ttl", "max_ttl_s", "Largest ttl_s a save may ask for.", click.IntRange(1)),
    Option(
        "--deadline-ms", "default_deadline_ms", "Deadline of a request that names none.", click.IntRange(1)
    ),
    Option("--max-deadline-ms", "max_deadline_ms", "Longer deadlines are cut to this.", click.IntRange(1)),
    Option(
        "--durability",
        "durability",
        "Durability of saves that do not say.",
        click.Choice(DURABILITIES),
    ),
    Option(
        "--min-replicas",
        "min_replicas",
        "Replicas that must acknowledge a replicated save.",
        click.IntRange(0),
    ),
    Option("--log-format", "log_format", "Log lines as text or JSON.", click.Choice(["text", "json"])),
    Option(
        "--log-level",
        "log_level",
        "Least severe level logged.",
        click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        str.upper,
    ),
    Option(
        "--metrics-port",
        "metrics_port",
        "Serve Prometheus /metrics on this port (0: any free one).",
        click.IntRange(0, 65535),
    ),
    Option("--metrics-addr", "metrics_addr", "Address the metrics endpoint binds."),
    Option("--max-connections", "max_connections", "Client connections held at once.", click.IntRange(1)),
    Option(
        "--max-inflight",
        "max_inflight_per_connection",
        "Requests in flight per connection before reading from it pauses.",
        click.IntRange(1),
    ),
    Option(
        "--max-inflight-bytes",
        "max_inflight_bytes",
        "Bytes held for all clients at once (unread input, requests in flight and their reply "
        "reserves, unread replies) before reading from any connection pauses.",
        click.IntRange(1),
    ),
    Option(
        "--max-inflight-bytes-per-connection",
        "max_inflight_bytes_per_connection",
        "The same for one connection: past it, reading from it pauses until its requests finish.",
        click.IntRange(1),
    ),
    Option("--max-frame-bytes", "max_frame_bytes", "Largest request frame.", click.IntRange(1)),
    Option(
        "--partial-frame-timeout",
        "partial_frame_timeout_s",
        "Seconds a connection may sit on half a frame.",
        click.FloatRange(0.01),
    ),
    Option(
        "--socket-mode",
        "socket_mode",
        "Octal mode of the socket; never world-accessible.",
        str,
        lambda text: int(text, 8),
    ),
    Option("--socket-group", "socket_group", "Group owning the socket."),
    Option(
        "--allow-uid",
        "allowed_uids",
        "Peer uid allowed to connect (repeatable); none: anyone the socket mode lets in.",
        int,
        lambda uids: frozenset(uids) if uids else None,
        multiple=True,
    ),
    Option(
        "--allow-gid",
        "allowed_gids",
        "Peer gid allowed to connect (repeatable); a peer passes on its uid or its gid.",
        int,
        lambda gids: frozenset(gids) if gids else None,
        multiple=True,
    ),
    Option(
        "--audit-maxlen",
        "audit_maxlen",
        "Events the outcome stream keeps as history; it grows past this only while a consumer group "
        "still owes older events.",
        click.IntRange(1),
    ),
    Option(
        "--accepted-cache",
        "accepted_cache_entries",
        "Operations whose last accepted state is remembered, so their next save is checked by "
        "what it appends; 0 checks every save whole.",
        click.IntRange(0),
    ),
    Option(
        "--accepted-cache-bytes",
        "accepted_cache_bytes",
        "Bytes the remembered states may take in all (their JSON); the least recently saved go first.",
        click.IntRange(0),
    ),
    Option(
        "--sweep-interval",
        "sweep_interval_s",
        "Seconds between sweeps: expire operations past their TTL, write outcome events a dead "
        "daemon left, trim the outcome stream.",
        click.FloatRange(0.01),
    ),
    Option(
        "--expire-grace",
        "expire_grace_s",
        "Seconds a state's key outlives its TTL, so a sweeper can still record its expiry.",
        click.IntRange(1),
    ),
    Option(
        "--outcome-group",
        "outcome_groups",
        "Consumer group created at start (repeatable): the stream keeps its events until it acks them.",
        str,
        tuple,
        multiple=True,
    ),
    Option(
        "--cleanup-retry",
        "cleanup_retry_s",
        "Seconds between attempts at deferred rollbacks.",
        click.FloatRange(0.01),
    ),
    Option(
        "--shutdown-grace",
        "shutdown_grace_s",
        "Seconds given to requests in flight at shutdown.",
        click.FloatRange(0),
    ),
    Option("--max-total", "limits.max_total", "Largest total_count of one operation.", click.IntRange(1)),
    Option("--max-state-bytes", "limits.max_state_bytes", "Largest JSON state.", click.IntRange(1)),
    Option(
        "--max-metadata-entries",
        "limits.max_metadata_entries",
        "Most metadata entries per state.",
        click.IntRange(0),
    ),
)


#: What the reference shows as the socket's default: it depends on the environment.
SOCKET_DEFAULT_SHOWN = (
    "`$DRAWSTATE_SOCKET`, `$XDG_RUNTIME_DIR/drawstate.sock`, else `/tmp/drawstate-<uid>/drawstate.sock`"
)
#: The data dir's default also depends on the environment.
DATA_DIR_DEFAULT_SHOWN = "`$XDG_STATE_HOME/drawstate`, else `~/.local/state/drawstate`"


def reference_table() -> str:
    """docs/operations.md's configuration reference, made from SERVE_OPTIONS (a test keeps them equal)."""
    rows = ["| option | environment | default | what it sets |", "|---|---|---|---|"]
    for option in SERVE_OPTIONS:
        if option.field == "socket_path":
            shown = SOCKET_DEFAULT_SHOWN
        elif option.field == "data_dir":
            shown = DATA_DIR_DEFAULT_SHOWN
        else:
            shown = f"`{option.shown_default()}`"
        rows.append(f"| `{option.flag}` | `{option.envvar}` | {shown} | {option.help} |")
    return "\n".join(rows) + "\n"


def _param_name(option: Option) -> str:
    return option.field.replace(".", "__")


def add_serve_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate `command` with every SERVE_OPTIONS row; values arrive as keyword arguments."""
    for option in reversed(SERVE_OPTIONS):
        command = click.option(
            option.flag,
            _param_name(option),
            type=option.type,
            multiple=option.multiple,
            envvar=option.envvar,
            default=() if option.multiple else None,
            show_default=option.shown_default(),
            help=option.help,
        )(command)
    return command


def config_from_options(values: dict[str, Any]) -> Config:
    """The Config for the given option values; options not given keep the Config's defaults."""
    fields: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    for option in SERVE_OPTIONS:
        value = values.get(_param_name(option))
        if value is None or (option.multiple and not value):
            continue
        if option.convert is not None:
            value = option.convert(value)
        if option.field.startswith("limits."):
            limits[option.field.removeprefix("limits.")] = value
        else:
            fields[option.field] = value
    if limits:
        fields["limits"] = Limits(**limits)
    return Config(redis_password=password_from_env(), **fields)
