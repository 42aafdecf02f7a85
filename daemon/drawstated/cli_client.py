"""The `drawstate` commands that talk to a running daemon: ping, load, pending, rollback, stats, audit, ...

Each is a thin wrapper over the blocking Client: click parses, the Client
calls, and the output is for people by default, `--json` for scripts. The
command group and `serve` live in cli.py, which registers these commands.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson

from drawstate import Client, DrawStateError, SidecarUnavailable
from drawstate.client import DEFAULT_TIMEOUT_S

EXIT_OK = 0
#: load found no state / ping found Redis down.
EXIT_NONE = 1
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_UNAVAILABLE = 3
EXIT_REFUSED = 4


def env(name: str) -> str:
    return f"DRAWSTATE_{name}"


socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=env("SOCKET"),
    help="Daemon socket. [default: $XDG_RUNTIME_DIR/drawstate.sock or /tmp/drawstate-<uid>/]",
)
timeout_option = click.option(
    "--timeout",
    type=float,
    default=DEFAULT_TIMEOUT_S * 5,
    envvar=env("TIMEOUT"),
    show_default=True,
    help="Seconds to wait for the daemon.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _client(socket_path: Path | None, timeout: float) -> Client:
    return Client(socket_path, timeout=timeout)


def _fail(exc: DrawStateError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_UNAVAILABLE if exc.retryable else EXIT_REFUSED)


def _print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
@socket_option
@timeout_option
@click.argument("lock_key")
@click.argument("operation_id")
@click.option("--reason", default="manual rollback", help="Recorded with the outcome event.")
@click.option(
    "--token",
    help="This rollback's token; resend with the one printed to get the same answer. [default: a new one]",
)
def rollback(
    socket_path: Path | None, timeout: float, lock_key: str, operation_id: str, reason: str, token: str | None
) -> None:
    """Roll an operation back; print what it had granted and who pays the refund.

    Exit 0 when rolled back (or deferred: Redis unreachable, the refund comes from the outcome
    stream), 1 when nothing was stored under that id (a typo, or gone already).
    """
    try:
        with _client(socket_path, timeout) as client:
            result = client.rollback(lock_key, operation_id, reason=reason, token=token)
    except DrawStateError as exc:
        _fail(exc)
        return
    _print_json(
        {
            "cleanup": result.cleanup,
            "final": result.final,
            "existed": result.existed,
            "token": result.token,
            "state": result.state.to_dict() if result.state else None,
        }
    )
    if result.cleanup == "deferred":
        click.echo("refund pending: deferred until Redis is back; the outcome stream will carry it", err=True)
    elif not result.existed:
        click.echo(
            f"nothing stored for {lock_key} {operation_id}: nothing rolled back, nothing to refund", err=True
        )
        sys.exit(EXIT_NONE)
    elif result.final:
        click.echo("rolled back: refund now, from the state above", err=True)
    else:
        click.echo("rolled back: the refund is owed through the outcome stream, not here", err=True)


@click.command()
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


_AGE_RE = re.compile(r"(\d+)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> int:
    """Unix seconds from "1767225600" (unix seconds) or an age before now: "90s", "10m", "2h", "1d"."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    match = _AGE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is neither unix seconds nor an age like 90s, 10m, 2h or 1d")
    return max(0, int(time.time() if now is None else now) - int(match[1]) * _UNIT_S[match[2]])


def _since_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc


def describe_event(event: dict[str, Any]) -> str:
    """One line for people: when, what, which operation, the draws it had, and why."""
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(event.get("time", 0)))
    kind, lock_key, operation_id = (event.get(k, "?") for k in ("event", "lock_key", "operation_id"))
    head = f"{when}  {kind:<16} {lock_key}  {operation_id}"
    if event.get("corrupted_state"):
        body = "state unreadable (raw value kept in the event)"
    elif not event.get("existed"):
        body = "no state (already gone)"
    else:
        body = f"{event.get('completed_count', 0)}/{event.get('total_count', 0)} draws"
        if event.get("errors"):
            body += f", {event['errors']} failed"
        granted = [str(r) for r in event.get("results") or ()]
        prizes = Counter(str(p.get("id", "?")) for p in event.get("prize_results") or ())
        granted += [f"{prize} x{count}" for prize, count in prizes.items()]
        body += f"  granted: {', '.join(granted) if granted else 'nothing'}"
    if event.get("event") == "rollback-superseded":
        body = (
            f"deferred rollback found it already closed by {event.get('closed_by', '?')}: nothing to refund"
        )
    elif event.get("event") in ("rollback", "expire") and event.get("existed"):
        body += "  refund: " + ("paid by the caller" if event.get("refunded_by_caller") else "owed (stream)")
    reason = event.get("reason")
    return f"{head}  {body}" + (f"  reason: {reason!r}" if reason else "")


@click.command()
@socket_option
@timeout_option
@click.option(
    "--since",
    callback=_since_option,
    help="Only events from then on: unix seconds, or an age before now (90s, 10m, 2h, 1d).",
)
@click.option("--lock-key", help="Only this lock key's events.")
@json_option
def audit(
    socket_path: Path | None, timeout: float, since: int | None, lock_key: str | None, as_json: bool
) -> None:
    """List audit events (rollback, complete, deferred-cleanup), oldest first, one line each."""
    try:
        with _client(socket_path, timeout) as client:
            events = list(client.iter_audit(lock_key, since=since))
    except DrawStateError as exc:
        _fail(exc)
        return
    if as_json:
        _print_json(events)
        return
    if not events:
        click.echo("no audit events")
        return
    for event in events:
        click.echo(describe_event(event))


@click.command()
@socket_option
@timeout_option
@click.option(
    "--group", required=True, help="Consumer group (created at its first read, from the oldest event)."
)
@click.option(
    "--consumer",
    default=lambda: f"cli-{socket.gethostname()}-{os.getpid()}",
    show_default="cli-<host>-<pid>",
    help="Consumer name within the group.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="Events per read.")
@click.option("--follow", is_flag=True, help="Keep waiting for new events (Ctrl-C stops).")
@click.option("--ack", "acknowledge", is_flag=True, help="Acknowledge each event once printed.")
@click.option(
    "--claim-idle",
    "claim_idle_ms",
    type=click.IntRange(1),
    help="Also take over events other consumers left unacknowledged this many ms.",
)
@json_option
def outcomes(
    socket_path: Path | None,
    timeout: float,
    group: str,
    consumer: str,
    limit: int,
    follow: bool,
    acknowledge: bool,
    claim_idle_ms: int | None,
    as_json: bool,
) -> None:
    """Read outcome events through a consumer group, as a refund worker does.

    Without --ack the events stay pending for this consumer (a refund worker of the same group
    can claim them); with --ack they are done for the group. --json prints one JSON object a line.
    """
    if follow and not acknowledge:
        # Unacknowledged events come back first on every read: following without --ack would
        # print the same ones again and again.
        raise click.UsageError("--follow needs --ack (to watch without consuming, use `drawstate audit`)")
    block_ms = int(timeout * 500) if follow else None
    try:
        with _client(socket_path, timeout) as client:
            while True:
                events = client.outcomes(
                    group, consumer, limit=limit, block_ms=block_ms, claim_idle_ms=claim_idle_ms
                )
                for event in events:
                    if as_json:
                        click.echo(orjson.dumps(dataclasses.asdict(event)).decode())
                    else:
                        click.echo(f"{event.id}  {describe_event(dataclasses.asdict(event))}")
                if acknowledge and events:
                    client.ack(group, [event.id for event in events])
                if not follow and (not acknowledge or len(events) < limit):
                    return
    except DrawStateError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        return


COMMANDS = (ping, load, pending, rollback, stats, audit, outcomes)
