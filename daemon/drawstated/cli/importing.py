"""The `drawstate import-legacy` command: click parses, importer.Importer does the work.

It reaches Redis as `drawstate serve` does: the same connection, prefix, TTL and limit
options (rows of options.SERVE_OPTIONS, so flags, DRAWSTATE_* variables and defaults agree),
the password only from the environment. cli.py registers it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson

from drawstated.config import PASSWORD_FILE_ENV, redact_url
from drawstated.options import SERVE_OPTIONS, config_from_options

if TYPE_CHECKING:
    from drawstated.legacy.importer import Report

#: The `serve` options that say where Redis is and what the daemon stores: the import takes them too.
SHARED_FIELDS = (
    "redis_url",
    "redis_sentinels",
    "sentinel_master",
    "redis_cluster",
    "redis_username",
    "redis_tls_ca",
    "redis_tls_cert",
    "redis_tls_key",
    "redis_socket_timeout_s",
    "prefix",
    "ttl_s",
    "expire_grace_s",
    "limits.max_total",
    "limits.max_state_bytes",
    "limits.max_metadata_entries",
)
#: Where the import's meaning of a shared option differs from serve's.
HELP = {
    "redis_url": "redis://, rediss:// or unix:// URL of the Redis the engine used (with Sentinel or "
    "Cluster, only its options: rediss://, the db). Never put a password here.",
    "prefix": "The sidecar's Redis key prefix (where states are written).",
    "ttl_s": "Seconds a state lives when its engine key has no expiry (the daemon's --ttl).",
}


def _shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed([o for o in SERVE_OPTIONS if o.field in SHARED_FIELDS]):
        command = click.option(
            option.flag,
            option.field.replace(".", "__"),
            type=option.type,
            envvar=option.envvar,
            default=None,
            show_default=option.shown_default(),
            help=HELP.get(option.field, option.help),
        )(command)
    return command


@click.command("import-legacy")
@_shared_options
@click.option(
    "--engine-prefix",
    envvar="DRAWSTATE_ENGINE_PREFIX",
    show_default="--prefix",
    help="The Go engine's key prefix (where its states are read).",
)
@click.option("--dry-run", is_flag=True, help="Write and delete nothing; report what a run would do.")
@click.option(
    "--delete-source",
    is_flag=True,
    help="Delete each engine key once its operation is in the sidecar's layout (never a refused one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON, every refused key included.")
def import_legacy(
    engine_prefix: str | None,
    dry_run: bool,
    delete_source: bool,
    as_json: bool,
    **values: Any,
) -> None:
    """Import the Go engine's in-flight states into the sidecar's layout (docs/migration.md §4).

    Exit 0 when every state was imported or was there already, 1 when some were refused
    (each listed with its reason), 2 for bad options, 3 when Redis failed (run it again).
    """
    # Imported here, not at the top: redis-py costs every other drawstate command ~65 ms to load.
    import redis  # noqa: PLC0415
    from redis.exceptions import RedisClusterException  # noqa: PLC0415

    from drawstated.legacy.importer import EXIT_REDIS, EXIT_USAGE, Importer, Report, Settings, connect  # noqa: PLC0415

    try:
        config = config_from_options(values)
        settings = Settings.from_config(
            config,
            engine_prefix=engine_prefix,
            dry_run=dry_run,
            delete_source=delete_source,
        )
        client = connect(config)
        client.ping()  # an unreachable Redis is said as such, before any report
    except ValueError as exc:
        _stop(f"bad configuration: {exc}", EXIT_USAGE)
    except OSError as exc:  # the password file or a TLS file
        _stop(
            f"cannot read {exc.filename} (${PASSWORD_FILE_ENV} or a TLS option): {exc.strerror}", EXIT_USAGE
        )
    except (redis.RedisError, RedisClusterException) as exc:
        where = ",".join(config.redis_cluster or config.redis_sentinels) or redact_url(config.redis_url)
        _stop(f"cannot reach Redis ({where}): {exc}", EXIT_REDIS)
    report = Report(dry_run=dry_run)
    try:
        with client:
            Importer(client, settings, report).run()
    except (redis.RedisError, RedisClusterException) as exc:
        _print(report, as_json)
        _stop(f"Redis failed during the import: {exc}; what is done stays done, run it again", EXIT_REDIS)
    _print(report, as_json)
    sys.exit(report.exit_code)


def _stop(message: str, code: int) -> NoReturn:
    click.echo(f"drawstate import-legacy: {message}", err=True)
    sys.exit(code)


def _quoted(key: str) -> str:
    """A key as Python quotes it: control and separator characters escaped, never sent raw to a terminal."""
    return repr(key)


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    for refusal in report.refused:
        click.echo(f"refused {_quoted(refusal.key)}  {refusal}")  # its values are quoted already
    for key in report.kept_changed:
        click.echo(f"kept    {_quoted(key)}  changed after it was read: import again")
    click.echo(summary(report))


def summary(report: Report) -> str:
    """The closing lines for people: each count, and the refusals by reason with one example each."""
    would = " (dry run: nothing written)" if report.dry_run else ""
    present = report.already_present + report.already_closed
    lines = [
        f"import-legacy{would}: {report.examined} engine states examined",
        f"  imported:        {report.imported}",
        f"  already present: {present} ({report.already_closed} of them ended in the sidecar)",
        f"  refused:         {len(report.refused)}",
    ]
    examples = report.examples()
    for reason, count in report.refused_by_reason().items():
        lines.append(f"    {reason}: {count}  (e.g. {examples[reason]})")
    lines.append(
        f"  vanished meanwhile: {report.vanished}   sidecar states left alone: {report.sidecar_states}"
    )
    if report.deleted or report.kept_changed:
        lines.append(f"  engine keys deleted: {report.deleted}   kept (changed): {len(report.kept_changed)}")
    return "\n".join(lines)
