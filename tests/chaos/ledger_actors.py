"""The ledger test's processes: game processes and recovery workers that write what they grant and refund.

Run as `python -m tests.chaos.ledger_actors game|recovery|resolve ...`. Each process grants
through the game backend's database (`backend.db` in the ledger directory: the `grants` table of
examples/refund_worker.py, keyed by (operation id, draw index), which the refund worker grants
through too, so a draw is granted once whoever gets there first), and appends JSON lines to its
own ledger file (one file per process, flushed line by line, so a SIGKILL loses at most the line
being written):

    {"k": "start",    "op", "lock", "total"}        the operation exists (its first save returned)
    {"k": "grant",    "op", "idx", "r", "new", "by"} draw idx was granted with result r (new: by this
                                                    call, as `by`; else granted before: a no-op)
    {"k": "in-doubt", "op", "idx", "r"}             record of draw idx ended OutcomeUnknown: not granted
    {"k": "intent",   "op", "lock", "token"}        about to roll back with this token (before the call)
    {"k": "rollback", "op", "final", "existed", "cleanup", "draws", "total"[, "by": "stream"]}
                                                    the answer; final: this process paid the refund
                                                    of `draws` draws, keyed by op; by "stream": it
                                                    asked with refund_by "stream" (never final)
    {"k": "complete", "op"}
    {"k": "append",   "op"}                         a save of op was made as an append (`--append-from`)
    {"k": "append-then-whole", "op"}                that append was answered base_unknown: sent whole

They follow docs/recovery.md's rules: grant only after `record` returned; on resume and on a
final rollback, grant again (idempotently) every result in the state; refund only on `final`;
store the rollback token before the call and, after a crash, resend with it (`resolve`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sqlite3
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from examples.refund_worker import SCHEMA, grant_once

from drawstate import (
    Client,
    DrawState,
    DrawStateError,
    MultiDraw,
    OperationClosed,
    OutcomeUnknown,
    VersionConflict,
    appends,
    ops,
)
from drawstate.multidraw import DrawResult
from drawstate.refund import Refund

#: Each call's timeout, and how long MultiDraw resends a save or a rollback before OutcomeUnknown.
CALL_TIMEOUT_S = 1.0
RESEND_DEADLINE_S = 2.0
#: Of a recovery worker's rollbacks, the share that leaves the refund to the outcome stream
#: (refund_by "stream", as an operator's sweep does) instead of paying it itself.
STREAM_REFUND_SHARE = 0.3
#: The game backend's database in the ledger directory: grants (and the refund worker's refunds).
BACKEND = "backend.db"
#: How long a grant waits for another process's write to the backend database (2 cores, 8 writers).
BACKEND_BUSY_S = 30.0


def open_backend(directory: Path) -> sqlite3.Connection:
    """The shared backend database, in WAL mode so the game processes and the worker write side by side."""
    backend = sqlite3.connect(directory / BACKEND, timeout=BACKEND_BUSY_S)
    backend.execute("PRAGMA journal_mode = WAL")
    for statement in SCHEMA:
        backend.execute(statement)
    return backend


class Ledger:
    """This process's ledger file (one JSON object a line, flushed at once) and its backend connection."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.path = directory / f"{name}-{os.getpid()}.jsonl"
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115  # open for the process's life
        self.backend = open_backend(directory)

    def write(self, **entry: Any) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def grant(self, operation_id: str, index: int, result: int) -> None:
        """Grant one draw through the backend, idempotently by (operation id, draw index), as a game does."""
        with self.backend:
            new = grant_once(self.backend, operation_id, index, json.dumps(result), self.name)
        self.write(k="grant", op=operation_id, idx=index, r=result, new=new, by=self.name)

    def close(self) -> None:
        self._file.close()
        self.backend.close()


def read_ledgers(directory: Path, prefix: str = "") -> Iterator[dict[str, Any]]:
    for path in sorted(directory.glob(f"{prefix}*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a SIGKILL cut short


def granted_indexes(state: DrawState) -> list[int]:
    """The indexes of the granted draws: 1..(completed + failed) without the failed ones, in order."""
    failed = {error.draw_index for error in state.errors}
    return [i for i in range(1, state.completed_count + len(state.errors) + 1) if i not in failed]


def grant_state(ledger: Ledger, state: DrawState) -> None:
    """Grant every result in the state again: owed to the player; the ledger keys grants by (op, idx)."""
    for index, result in zip(granted_indexes(state), state.results, strict=False):
        ledger.grant(state.operation_id, index, result)


def record(ledger: Ledger, draw: MultiDraw, result: DrawResult) -> int:
    """Record one draw; an OutcomeUnknown is written down (the draw is in doubt: not granted) and raised."""
    index = draw.next_draw_index
    try:
        return draw.record(result)
    except OutcomeUnknown:
        ledger.write(
            k="in-doubt", op=draw.operation_id, idx=index, r=result if isinstance(result, int) else None
        )
        raise


def roll_back(ledger: Ledger, draw: MultiDraw, reason: str) -> None:
    """Roll back with an intent stored first, and write the answer (the refund, when final)."""
    token = _intent(ledger, draw)
    _answer(ledger, draw, token, draw.rollback(reason))


def roll_back_to_stream(ledger: Ledger, client: Client, draw: MultiDraw, reason: str) -> None:
    """Roll back leaving the refund to the outcome stream (`refund_by: "stream"`), intent first.

    Its answer is never final; a crash before it is resolved by `resolve`, which resends the token
    asking to pay: it must hear whatever was decided first.
    """
    token = _intent(ledger, draw)
    result = client.rollback(draw.lock_key, draw.operation_id, reason=reason, token=token, refund_by="stream")
    # Told to pay (a broken promise the ledger check names), it pays, as MultiDraw's caller would.
    refund = Refund(result.state or draw.state, result.cleanup, result.final)
    _answer(ledger, draw, token, refund, by="stream")


def _intent(ledger: Ledger, draw: MultiDraw) -> str:
    token = draw.rollback_token
    ledger.write(k="intent", op=draw.operation_id, lock=draw.lock_key, token=token)
    return token


def _answer(ledger: Ledger, draw: MultiDraw, token: str, refund: Refund, **fields: str) -> None:
    if refund.final:
        grant_state(ledger, refund.state)
    ledger.write(
        k="rollback",
        op=draw.operation_id,
        token=token,
        final=refund.final,
        cleanup=refund.cleanup,
        draws=refund.ungranted_count,
        total=refund.state.total_count,
        **fields,
    )


def draw_value(operation_id: str, index: int) -> int:
    return zlib.crc32(f"{operation_id}:{index}".encode()) & 0xFFFFFF


def game(client: Client, ledger: Ledger, slot: str, rng: random.Random) -> None:
    """Forever: start multi-draws, record and grant, then complete, roll back, or abandon them."""
    while True:
        total = rng.randint(2, 6)
        ttl_s = rng.choice((1, 2, 60, 60))  # some expire while the game dawdles or dies
        try:
            draw = MultiDraw.start(
                client, f"{slot}:{rng.randrange(10**9)}", total, ttl_s=ttl_s,
                metadata={"price_paid": str(total * 100), "user_id": slot},
                resend_deadline_s=RESEND_DEADLINE_S,
            )  # fmt: skip
        except DrawStateError:
            time.sleep(0.1)  # the daemon restarting, or a Redis outage: try another one
            continue
        ledger.write(k="start", op=draw.operation_id, lock=draw.lock_key, total=total)
        try:
            _play(draw, ledger, rng)
        except (VersionConflict, OperationClosed):
            pass  # a recovery worker took it over, or it expired: not ours any more
        except DrawStateError:  # unreachable, or a save in doubt
            if rng.random() < 0.5:
                _give_up(draw, ledger)  # the player gives up: a rollback, deferred if Redis is away
            # else left to recovery, expiry, or `resolve`


def _give_up(draw: MultiDraw, ledger: Ledger) -> None:
    with contextlib.suppress(DrawStateError):  # in doubt, or taken: its intent is resolved later
        roll_back(ledger, draw, "gave up after an error")


def _play(draw: MultiDraw, ledger: Ledger, rng: random.Random) -> None:
    while not draw.finished:
        time.sleep(rng.choice((0.0, 0.01, 0.05, 0.2, 1.5)))
        if rng.random() < 0.08:
            return  # abandoned: the game forgets it (a recovery worker or expiry ends it)
        index = draw.next_draw_index
        if rng.random() < 0.15:
            record(ledger, draw, RuntimeError("inventory service timed out"))  # failed: grants nothing
        else:
            value = draw_value(draw.operation_id, index)
            record(ledger, draw, value)
            ledger.grant(draw.operation_id, index, value)  # only after record returned
    if rng.random() < 0.3:
        roll_back(ledger, draw, "player cancelled")
    else:
        draw.complete()
        ledger.write(k="complete", op=draw.operation_id)


def recovery(
    client: Client, ledger: Ledger, rng: random.Random, older_than_s: int, rollback_share: float
) -> None:
    """Forever: find abandoned operations; resume and finish them, or roll them back."""
    while True:
        try:
            items = list(client.iter_pending(older_than_s=older_than_s))
        except DrawStateError:
            time.sleep(0.1)
            continue
        rng.shuffle(items)
        for item in items[:5]:
            recover_one(client, ledger, rng, item.lock_key, item.operation_id, rollback_share)
        time.sleep(0.05)


def recover_one(
    client: Client,
    ledger: Ledger,
    rng: random.Random,
    lock_key: str,
    operation_id: str,
    rollback_share: float,
) -> None:
    try:
        draw = MultiDraw.resume(client, lock_key, operation_id, resend_deadline_s=RESEND_DEADLINE_S)
        if draw is None:
            return
        grant_state(ledger, draw.state)  # owed from before the crash
        if rng.random() < rollback_share:
            if rng.random() < STREAM_REFUND_SHARE:
                roll_back_to_stream(ledger, client, draw, "recovery: abandoned, refund by the stream")
            else:
                roll_back(ledger, draw, "recovery: abandoned")
            return
        _finish(draw, ledger, rng)
    except (VersionConflict, OperationClosed, OutcomeUnknown, DrawStateError):
        return  # another worker has it, it ended, or it is in doubt: a later pass or expiry settles it


def _finish(draw: MultiDraw, ledger: Ledger, rng: random.Random) -> None:
    while not draw.finished:
        index = draw.next_draw_index
        if rng.random() < 0.1:
            record(ledger, draw, RuntimeError("prize service down"))
            continue
        value = draw_value(draw.operation_id, index)
        record(ledger, draw, value)
        ledger.grant(draw.operation_id, index, value)
    draw.complete()
    ledger.write(k="complete", op=draw.operation_id)


def resolve(client: Client, ledger: Ledger, directory: Path) -> int:
    """Resend every rollback whose answer no process wrote down, with its stored token; pay if final.

    What a game does after a crash between asking for a rollback and paying its refund.
    Returns how many intents are still unresolved (their answer was in doubt again).
    """
    answered = {entry["op"] for entry in read_ledgers(directory) if entry["k"] == "rollback"}
    open_intents = {
        e["op"]: e for e in read_ledgers(directory) if e["k"] == "intent" and e["op"] not in answered
    }
    unresolved = 0
    for intent in open_intents.values():
        try:
            result = client.rollback(intent["lock"], intent["op"], token=intent["token"], reason="resolve")
        except OperationClosed:
            ledger.write(
                k="rollback", op=intent["op"], token=intent["token"], final=False, cleanup="closed", draws=0
            )
            continue  # ended another way first: not this caller's refund
        except DrawStateError:
            unresolved += 1
            continue
        state = result.state
        if result.final and state is not None:
            grant_state(ledger, state)
        ledger.write(
            k="rollback",
            op=intent["op"],
            token=intent["token"],
            final=result.final,
            cleanup=result.cleanup,
            draws=(state.total_count - state.completed_count) if state is not None else 0,
            total=state.total_count if state is not None else 0,
        )
    return unresolved


def send_appends(client: Client, ledger: Ledger, min_items: int) -> None:
    """Have this client's multi-draws, small as they are, send their saves as appends.

    The threshold is the client's private one (appends.py): a pull of a few draws stays far below
    the default, and the chaos is then played with appends, base_unknown and their fallbacks too.
    Each append made is written down, and each answered base_unknown and sent whole again.
    """
    client._bases.min_items = min_items
    save_append, whole = ops.save_append, appends.PlannedSave.whole

    def counted_append(append: dict[str, Any], **fields: Any) -> ops.Request:
        ledger.write(k="append", op=append["operation_id"])
        return save_append(append, **fields)

    def counted_whole(plan: appends.PlannedSave) -> ops.Request:
        if hasattr(plan, "request"):  # its first request was made: an append answered base_unknown
            ledger.write(k="append-then-whole", op=plan.request["append"]["operation_id"])
        return whole(plan)

    ops.save_append = counted_append
    appends.PlannedSave.whole = counted_whole  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("game", "recovery", "resolve"))
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--older-than", type=int, default=2)
    parser.add_argument("--rollback-share", type=float, default=0.5)
    parser.add_argument("--append-from", type=int, help="send saves of states this many items up as appends")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    ledger = Ledger(args.ledger, args.name)
    with Client(timeout=CALL_TIMEOUT_S) as client:  # the socket from DRAWSTATE_SOCKET
        if args.append_from is not None:
            send_appends(client, ledger, args.append_from)
        if args.role == "game":
            game(client, ledger, args.name, rng)
        elif args.role == "recovery":
            recovery(client, ledger, rng, args.older_than, args.rollback_share)
        else:
            return 1 if resolve(client, ledger, args.ledger) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
