"""The `drawstate` commands about one operation or the daemon (ping, load, rollback, stats), and shared parts.

Each is a thin wrapper over the blocking Client: click parses, the Client calls, and the output
is for people by default, `--json` for scripts. The commands over many operations (pending,
audit, outcomes, recover) are in cli_operator.py; the group and `serve` in cli.py.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from drawstate import Client, DrawStateError
from drawstate.client import DEFAULT_TIMEOUT_S
from drawstate.protocol import REFUND_BY

EXIT_OK = 0
#: load found no state / ping found Redis down.
EXIT_NONE = 1
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_UNAVAILABLE = 3
EXIT_REFUSED = 4


def env(name: str) -> str:
    return f"DRAWSTATE_{name}"


#: The commands' call timeout. Longer than a game's Client (1 s): an operator's one-off call may
#: meet a daemon busy with its games, or a page that walks many keys, and nobody waits on it.
CLI_TIMEOUT_S = DEFAULT_TIMEOUT_S * 5

socket_option = click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=env("SOCKET"),
    help="Daemon socket (also $DRAWSTATE_SOCKET). [default: $XDG_RUNTIME_DIR/drawstate.sock, "
    "else /tmp/drawstate-<uid>/drawstate.sock]",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=CLI_TIMEOUT_S,
    envvar=env("TIMEOUT"),
    show_default=True,
    help="Seconds each call may take (longer than a game client's 1 s: nobody waits on a one-off command).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def client_for(socket_path: Path | None, timeout: float) -> Client:
    return Client(socket_path, timeout=timeout)


def fail(exc: DrawStateError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(EXIT_UNAVAILABLE if exc.retryable else EXIT_REFUSED)


def print_json(data: Any, *, one_line: bool = False) -> None:
    click.echo(orjson.dumps(data, option=0 if one_line else orjson.OPT_INDENT_2).decode())


@click.command()
@socket_option
@timeout_option
@json_option
def ping(socket_path: Path | None, timeout: float, as_json: bool) -> None:
    """Exit 0 when the daemon answers and its Redis is up."""
    try:
        with client_for(socket_path, timeout) as client:
            reply = client.ping()
    except DrawStateError as exc:
        fail(exc)
        return
    if as_json:
        print_json(dataclasses.asdict(reply), one_line=True)
    else:
        click.echo(f"daemon {reply.version}: redis {reply.redis}")
    sys.exit(EXIT_OK if reply.up else EXIT_NONE)


@click.command()
@socket_option
@timeout_option
@json_option
@click.argument("lock_key")
@click.argument("operation_id", required=False)
def load(
    socket_path: Path | None, timeout: float, as_json: bool, lock_key: str, operation_id: str | None
) -> None:
    """Print an operation's state as JSON (the newest of LOCK_KEY without OPERATION_ID).

    Indented for people; --json prints it on one line.
    """
    try:
        with client_for(socket_path, timeout) as client:
            state = client.load(lock_key, operation_id)
    except DrawStateError as exc:
        fail(exc)
        return
    if state is None:
        click.echo("no live operation", err=True)
        sys.exit(EXIT_NONE)
    print_json(state.to_dict(), one_line=as_json)


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
@click.option(
    "--refund-by",
    type=click.Choice(REFUND_BY),
    default="caller",
    show_default=True,
    help="Who pays the refund: you, from what is printed (caller), or the refund worker (stream).",
)
@json_option
def rollback(
    socket_path: Path | None,
    timeout: float,
    as_json: bool,
    lock_key: str,
    operation_id: str,
    reason: str,
    token: str | None,
    refund_by: str,
) -> None:
    """Roll an operation back; print what it had granted and who pays the refund.

    The reply is JSON (indented for people; one line with --json); what it means goes to stderr.
    Exit 0 when rolled back (or deferred: Redis unreachable, the refund comes from the outcome
    stream), 1 when nothing was stored under that id (a typo, or gone already).
    """
    try:
        with client_for(socket_path, timeout) as client:
            result = client.rollback(
                lock_key,
                operation_id,
                reason=reason,
                token=token,
                refund_by="stream" if refund_by == "stream" else "caller",
            )
    except DrawStateError as exc:
        fail(exc)
        return
    print_json(
        {
            "cleanup": result.cleanup,
            "final": result.final,
            "existed": result.existed,
            "token": result.token,
            "state": result.state.to_dict() if result.state else None,
        },
        one_line=as_json,
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
        with client_for(socket_path, timeout) as client:
            snapshot = client.stats()
    except DrawStateError as exc:
        fail(exc)
        return
    if as_json:
        data = dataclasses.asdict(snapshot)
        data.update(data.pop("extra"))
        print_json(data)
        return
    click.echo(
        f"redis: {snapshot.redis}   hot path: {snapshot.hot_path}   uptime: {snapshot.uptime_s} s   "
        f"connections: {snapshot.connections}   in flight: {snapshot.in_flight}"
    )
    click.echo(
        f"batches: {snapshot.batches} (mean {snapshot.mean_batch}, max {snapshot.max_batch})   "
        f"redis retries: {snapshot.redis_retries}   deferred rollbacks: {snapshot.deferred_rollbacks}"
    )
    click.echo(
        f"outcome stream: {snapshot.outcome_stream_length} events"
        + ("  (over its cap: a consumer group is behind)" if snapshot.outcome_stream_over_cap else "")
        + f"   expired: {snapshot.expired}"
    )
    for op, codes in sorted(snapshot.requests.items()):
        latency = snapshot.latency.get(op, {})
        counts = ", ".join(f"{code}={n}" for code, n in sorted(codes.items()))
        pcts = " ".join(f"{k.removesuffix('_ms')}={v}ms" for k, v in latency.items())
        click.echo(f"  {op:<9} {counts:<40} {pcts}")


_AGE_RE = re.compile(r"(\d+)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_age(text: str) -> int:
    """Seconds from "300" or an age: "90s", "10m", "2h", "1d"."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    match = _AGE_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is neither seconds nor an age like 90s, 10m, 2h or 1d")
    return int(match[1]) * _UNIT_S[match[2]]


def parse_since(text: str, now: float | None = None) -> int:
    """Unix seconds from "1767225600" (unix seconds) or an age before now: "90s", "10m", "2h", "1d"."""
    text = text.strip().lower()
    if text.isdigit():
        return int(text)
    if _AGE_RE.fullmatch(text) is None:
        raise ValueError(f"{text!r} is neither unix seconds nor an age like 90s, 10m, 2h or 1d")
    return max(0, int(time.time() if now is None else now) - parse_age(text))


def time_option(
    parse: Callable[[str], int],
) -> Callable[[click.Context, click.Parameter, str | None], int | None]:
    """A click callback that turns an option's text into seconds with `parse`, or a usage error."""

    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from exc

    return convert


since_option = click.option(
    "--since",
    callback=time_option(parse_since),
    help="Only events from then on: unix seconds, or an age before now (90s, 10m, 2h, 1d).",
)


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


COMMANDS = (ping, load, rollback, stats)
