"""The operator's commands over many operations: pending (--watch), audit (--follow), outcomes, recover.

Like rq's `info` and `requeue`: what is live and for how long, what ended and how, and a sweep
of abandoned operations with a dry run. Each prints for people by default and JSON with `--json`
(one object a line in the modes that keep running).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
import orjson

from drawstate import DrawStateError, OperationClosed, OutcomeEvent, PendingItem, VersionConflict
from drawstated.cli.client import (
    EXIT_NONE,
    client_for,
    describe_event,
    fail,
    json_option,
    parse_age,
    print_json,
    since_option,
    socket_option,
    time_option,
    timeout_option,
)

#: How often `audit --follow` asks for new events.
FOLLOW_POLL_S = 1.0


def _table(items: list[PendingItem]) -> str:
    lines = [f"{'LOCK KEY':<30} {'OPERATION':<26} {'DRAWS':>9} {'VERSION':>7} {'IDLE':>8}"]
    for item in items:
        draws = f"{item.completed_count}/{item.total_count}"
        lines.append(
            f"{item.lock_key:<30} {item.operation_id:<26} {draws:>9} {item.version:>7} {item.age_s:>7}s"
        )
    return "\n".join(lines)


_age_option = time_option(parse_age)


@click.command()
@socket_option
@timeout_option
@click.option("--lock-key", help="Only this lock key's operations.")
@click.option(
    "--older-than",
    "older_than_s",
    callback=_age_option,
    help="Only operations not saved for this long: seconds, or an age (90s, 10m, 2h, 1d).",
)
@click.option("--watch", "watch_s", type=click.FloatRange(0.1), help="List again every this many seconds.")
@json_option
def pending(
    socket_path: Path | None,
    timeout: float,
    lock_key: str | None,
    older_than_s: int | None,
    watch_s: float | None,
    as_json: bool,
) -> None:
    """List live operations: interrupted ones are those not saved for a while."""
    try:
        with client_for(socket_path, timeout) as client:
            while True:
                items = list(client.iter_pending(lock_key, older_than_s=older_than_s))
                if as_json:
                    print_json([dataclasses.asdict(item) for item in items], one_line=watch_s is not None)
                elif watch_s is not None:
                    click.echo(f"-- {time.strftime('%H:%M:%S')}  {len(items)} pending")
                    click.echo(_table(items) if items else "no pending operations")
                else:
                    click.echo(_table(items) if items else "no pending operations")
                if watch_s is None:
                    return
                time.sleep(watch_s)
    except DrawStateError as exc:
        fail(exc)
    except KeyboardInterrupt:
        return


@click.command()
@socket_option
@timeout_option
@since_option
@click.option("--lock-key", help="Only this lock key's events.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    help="The newest this many events (with --since: the first this many from then).",
)
@click.option("--follow", is_flag=True, help="Then keep printing new events as they come (Ctrl-C stops).")
@json_option
def audit(
    socket_path: Path | None,
    timeout: float,
    since: int | None,
    lock_key: str | None,
    limit: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """List the outcome stream's events (complete, rollback, expire, notes), oldest first, one line each.

    `--limit N` shows the newest N, like `tail -n N`; `--follow` then prints new events as they
    come, like `tail -f`. Reads without a consumer group and acknowledges nothing: the operator's
    view of the history. --json prints one array; with --follow, one JSON object a line.
    """
    collected: list[dict[str, Any]] = []  # --json without --follow: one array, as the other commands

    def show(events: Sequence[OutcomeEvent]) -> None:
        for event in events:
            data = event.to_dict()
            if as_json and not follow:
                collected.append(data)
            else:
                click.echo(orjson.dumps(data).decode() if as_json else describe_event(data))

    try:
        with client_for(socket_path, timeout) as client:
            cursor = _audit_history(client, show, lock_key, since, limit)
            if not follow:
                if as_json:
                    print_json(collected)
                elif cursor is None:
                    click.echo("no audit events")
                return
            start = since if since is not None else int(time.time()) - 1
            while True:
                page = client.audit(lock_key, since=start if cursor is None else None, cursor=cursor)
                show(page.items)
                cursor = page.cursor or (page.items[-1].id if page.items else cursor)
                if page.cursor is None:
                    time.sleep(FOLLOW_POLL_S)  # at the end: wait for new events
    except DrawStateError as exc:
        fail(exc)
    except KeyboardInterrupt:
        return


def _audit_history(
    client: Any,
    show: Callable[[Sequence[OutcomeEvent]], None],
    lock_key: str | None,
    since: int | None,
    limit: int | None,
) -> str | None:
    """Print the history `audit` asks for; the id to follow from (None when there was nothing)."""
    if limit is not None and since is None:
        page = client.audit(lock_key, limit=limit, newest=True)
        show(page.items)
        cursor: str | None = page.cursor
        return cursor
    cursor, shown = None, 0
    while True:
        page = client.audit(lock_key, since=since if cursor is None else None, cursor=cursor)
        items = page.items if limit is None else page.items[: limit - shown]
        show(items)
        shown += len(items)
        if limit is not None and shown >= limit:
            return str(items[-1].id)  # following goes on after the last one shown
        cursor = page.cursor or (page.items[-1].id if page.items else cursor)
        if page.cursor is None:
            return cursor


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
        raise click.UsageError(
            "--follow needs --ack (to watch without consuming, use `drawstate audit --follow`)"
        )
    block_ms = int(timeout * 500) if follow else None
    try:
        with client_for(socket_path, timeout) as client:
            while True:
                events = client.outcomes(
                    group, consumer, limit=limit, block_ms=block_ms, claim_idle_ms=claim_idle_ms
                )
                for event in events:
                    data = event.to_dict()
                    click.echo(
                        orjson.dumps(data).decode() if as_json else f"{event.id}  {describe_event(data)}"
                    )
                if acknowledge and events:
                    client.ack(group, [event.id for event in events])
                if not follow and (not acknowledge or len(events) < limit):
                    return
    except DrawStateError as exc:
        fail(exc)
    except KeyboardInterrupt:
        return


@click.command()
@socket_option
@timeout_option
@click.option(
    "--older-than",
    "older_than_s",
    required=True,
    callback=_age_option,
    help="Abandoned: not saved for this long (seconds, or 90s, 10m, 2h, 1d).",
)
@click.option("--lock-key", help="Only this lock key's operations.")
@click.option("--rollback", "mode", flag_value="rollback", help="Roll each back (the refund worker pays).")
@click.option("--report", "mode", flag_value="report", default=True, help="Only list them (the default).")
@click.option("--dry-run", is_flag=True, help="Say what --rollback would do; change nothing.")
@click.option(
    "--reason", default="abandoned (drawstate recover)", show_default=True, help="Recorded with each."
)
@json_option
def recover(
    socket_path: Path | None,
    timeout: float,
    older_than_s: int,
    lock_key: str | None,
    mode: str,
    dry_run: bool,
    reason: str,
    as_json: bool,
) -> None:
    """Sweep abandoned operations: report them, or roll each back with a reason.

    A rollback here asks the outcome stream to pay (`refund_by: "stream"`): the refund worker
    refunds what each had not granted, exactly once. Each rollback requires the version listed,
    so an operation a game resumed (saved), completed or rolled back meanwhile is skipped.
    Exit 1 when nothing was abandoned.
    """
    report: list[dict[str, Any]] = []
    try:
        with client_for(socket_path, timeout) as client:
            for item in client.iter_pending(lock_key, older_than_s=older_than_s):
                entry: dict[str, Any] = {**dataclasses.asdict(item), "action": "report"}
                if mode == "rollback":
                    entry["action"] = "would roll back" if dry_run else _roll_back(client, item, reason)
                report.append(entry)
                if not as_json:
                    draws = f"{item.completed_count}/{item.total_count}"
                    line = f"{entry['action']:<22} {item.lock_key}  {item.operation_id}  {draws} draws"
                    click.echo(f"{line}  idle {item.age_s}s")
    except DrawStateError as exc:
        fail(exc)
        return
    if as_json:
        print_json(report)
    elif not report:
        click.echo(f"nothing abandoned for {older_than_s} s or more")
    else:
        done = sum(entry["action"] == "rolled back" for entry in report)
        if mode == "report":
            verb, count = "abandoned", len(report)
        elif dry_run:
            verb, count = "would roll back", len(report)
        else:
            verb, count = "rolled back", done
        click.echo(f"{verb}: {count} of {len(report)} operation(s) idle for {older_than_s} s or more")
    if not report:
        raise SystemExit(EXIT_NONE)


def _roll_back(client: Any, item: PendingItem, reason: str) -> str:
    try:
        result = client.rollback(
            item.lock_key, item.operation_id, reason=reason, refund_by="stream", expect_version=item.version
        )
    except OperationClosed:
        return "skipped (ended)"
    except VersionConflict:
        return "skipped (resumed)"  # saved since it was listed: a game has it again
    if result.cleanup == "deferred":
        return "deferred"
    return "rolled back" if result.existed else "skipped (gone)"


OPERATOR_COMMANDS = (pending, audit, outcomes, recover)
