"""Operation state in Redis: save, load, list, and end (complete, roll back, expire) through the Lua scripts.

Scripts return plain arrays; this module turns them into values or RequestErrors, so no other
module knows a script's reply layout. Each operation's keys share one Cluster slot (keys.py);
where the outcome stream shares the node too (one server, Sentinel), the scripts that end an
operation write its outcome event themselves, else the daemon writes it after them (outbox).
There too, reading a lock key's newest operation or a page of its operations is one script
(newest.lua, page.lua); on Cluster it is one command per key (see `load`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from drawstate import protocol
from drawstated import errors, keys
from drawstated.config import Config
from drawstated.redis.commands import Commands, expire_future
from drawstated.redis.pipeline import Backend, Wait
from drawstated.redis.retry import RetryPolicy

#: Index members whose state keys are read per round trip by load and pending.
READ_CHUNK = 16
#: Index members newest.lua or page.lua looks at per call, those it drops as gone included: bounds
#: one script's run when a lock key's index holds many members whose states have expired.
SCRIPT_LOOK_MAX = 256
#: SCAN COUNT hint per round trip when walking every key of a kind.
SCAN_COUNT = 500
#: Bytes read from the end of a state by the sweeper: enough for its version, token and expiry.
TAIL_BYTES = 192

Final = Literal["1", "0", "p"]
EndKind = Literal["rollback", "complete"]
Mode = Literal["direct", "deferred"]
#: outbox.lua's answer when there is no event to write: the tombstone is gone, another daemon
#: holds the lease, or the event is in the stream already.
OutboxStatus = Literal["gone", "leased", "published"]
#: expire.lua's answer; "expired-outbox" when the event is left for the daemon to write (Cluster).
#: Who writes an ended operation's event: the daemon that ended it, or a sweeper (any daemon).
PublishMode = Literal["owner", "sweeper"]
ExpireStatus = Literal["expired", "expired-outbox", "live", "gone", "closed"]
_OUTBOX_STATUSES: frozenset[str] = frozenset(OutboxStatus.__args__)  # type: ignore[attr-defined]
_EXPIRE_STATUSES: frozenset[str] = frozenset(ExpireStatus.__args__)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """One checked save, ready for save.lua; `wait` asks for replica acknowledgement."""

    lock_key: str
    operation_id: str
    head: bytes
    token: str
    expect_version: int | None
    completed_count: int
    ttl_ms: int
    wait: Wait | None
    #: The state's `_digest` (codec.py), and the stored one it extends ("" when unknown).
    digest: str
    expect_digest: str
    #: Failed draws in the state: save.lua checks their numbers only when there are some.
    error_count: int


@dataclass(frozen=True, slots=True)
class SaveOutcome:
    version: int
    #: This token's save had already landed: nothing was written.
    replayed: bool
    #: What WAIT reported when the save asked for replication, else None.
    replicas: int | None


class Settled(NamedTuple):
    """A rollback's refund decision, as stored: who pays, and whether its event is written."""

    final: Final
    published: bool


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    """What ending an operation found: done now, a repeat of the same close (replay), or, for a
    deferred rollback only, nothing to end (neither the state nor a record of its ending)."""

    status: Literal["done", "replay", "nothing"]
    #: Who pays a rollback's refund: "1" its caller, "0" the outcome stream, "p" not decided yet.
    final: Final
    existed: bool
    #: The state removed (raw JSON), or None when none was stored.
    body: bytes | None
    #: The outcome event is in the stream already.
    published: bool


class Store:
    """The daemon's view of operation state in Redis."""

    def __init__(self, commands: Commands, config: Config) -> None:
        self.commands = commands
        self.prefix = config.prefix
        #: Whether the outcome stream shares a node with every operation (not on Cluster).
        self.events_inline = not config.redis_cluster
        #: Whether a script may read keys it does not declare (one server or Sentinel's master):
        #: then load newest and a page of one lock key are one script each (see `load`).
        self.reads_inline = not config.redis_cluster
        self.tomb_ttl_ms = config.ttl_s * 1000
        self.grace_ms = config.expire_grace_s * 1000
        self.lease_ms = config.outcome_lease_ms

    @classmethod
    def connect(cls, backend: Backend, config: Config, retry: RetryPolicy | None = None) -> Store:
        return cls(Commands(backend, retry), config)

    @property
    def backend(self) -> Backend:
        return self.commands.backend

    async def load_scripts(self, deadline: float | None = None) -> None:
        await self.commands.load_scripts(deadline)

    async def close(self) -> None:
        await self.backend.close()

    def _operation_keys(self, lock_key: str, operation_id: str) -> list[str]:
        names = keys.operation_keys(self.prefix, lock_key, operation_id)
        if self.events_inline:
            names.append(keys.audit_key(self.prefix))
        return names

    def _outbox_keys(self, lock_key: str, operation_id: str) -> list[str]:
        names = [
            keys.closed_key(self.prefix, lock_key, operation_id),
            keys.outbox_key(self.prefix, lock_key, operation_id),
        ]
        if self.events_inline:
            names.append(keys.audit_key(self.prefix))
        return names

    # --- saving -------------------------------------------------------------------------

    def save_command(self, save: SaveRequest) -> tuple[Any, ...]:
        """The EVALSHA of save.lua for one save (see its header for KEYS and ARGV)."""
        return self.commands.scripts["save"].command(
            self._operation_keys(save.lock_key, save.operation_id),
            (
                save.operation_id,
                save.lock_key,
                save.head,
                save.token,
                "" if save.expect_version is None else save.expect_version,
                save.completed_count,
                save.ttl_ms,
                self.grace_ms,
                self.tomb_ttl_ms,
                self.lease_ms,
                save.digest,
                save.expect_digest,
                save.error_count,
            ),
        )

    def start_save(self, save: SaveRequest, deadline: float) -> asyncio.Future[Any]:
        """One attempt, no retry (the hot path): the raw reply's future, cancelled at the deadline.

        A caller that sees a transient error or NOSCRIPT hands it to `save`, which backs off and
        retries with the same token, so the attempts count as one save.
        """
        future = self.backend.submit(*self.save_command(save), wait=save.wait)
        timer = asyncio.get_running_loop().call_at(deadline, expire_future, future)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    async def save(
        self, save: SaveRequest, deadline: float, *, failed: BaseException | None = None
    ) -> SaveOutcome:
        """Run save.lua with retries; `failed` is how a first attempt (start_save) failed."""
        reply = await self.commands.evalsha(deadline, self.save_command(save), save.wait, failed=failed)
        return self.save_result(save, reply)

    def save_result(self, save: SaveRequest, reply: Any) -> SaveOutcome:
        """The outcome of save.lua's reply; RequestError for a refusal."""
        operation_id, expect_version = save.operation_id, save.expect_version
        acked = None
        if save.wait is not None:
            reply, acked = reply
        status = reply[0].decode()
        if status in ("ok", "replay"):
            return SaveOutcome(int(reply[1]), status == "replay", acked)
        if status == "closed":
            raise closed_error(operation_id, reply[1].decode(), "saved again")
        if status == "conflict":
            stored = int(reply[1])
            raise errors.RequestError(
                protocol.VERSION_CONFLICT,
                f"expected version {expect_version}, stored version is {stored}"
                + (" (no stored state)" if stored == 0 else ""),
                stored_version=stored,
            )
        if status == "stale":
            field_name = reply[1].decode()
            raise errors.RequestError(protocol.STALE_STATE, STALE_MESSAGES[field_name], field=field_name)
        raise errors.corrupted(
            f"stored state of {operation_id} is corrupted: {reply[1].decode()}", source="stored"
        )

    # --- reading ------------------------------------------------------------------------

    async def load(
        self, lock_key: str, operation_id: str | None, deadline: float
    ) -> tuple[str, bytes] | None:
        """(operation_id, raw JSON) of the requested or newest operation stored, or None.

        By id: one GET. The newest, on one server: one newest.lua, which walks the index newest
        first and reads the state keys itself. On Cluster every key is named in its own command
        instead (the index newest first, then the state keys a chunk at a time), never read from
        inside a script: while Cluster migrates the lock key's slot, a script's undeclared reads
        would miss keys already moved, where a command is redirected to them (ASK).
        The caller judges logical expiry (codec.decode_stored).
        """
        p = self.prefix
        if operation_id is not None:
            raw = await self.commands.run(deadline, "GET", keys.state_key(p, lock_key, operation_id))
            return None if raw is None else (operation_id, raw)
        if self.reads_inline:
            return await self._newest_by_script(lock_key, deadline)
        members = await self.commands.run(deadline, "ZREVRANGE", keys.index_key(p, lock_key), 0, -1)
        for start in range(0, len(members), READ_CHUNK):
            found = await self._states(lock_key, members[start : start + READ_CHUNK], deadline)
            if found:
                return found[0]
        return None

    async def _newest_by_script(self, lock_key: str, deadline: float) -> tuple[str, bytes] | None:
        index, base = keys.index_key(self.prefix, lock_key), keys.state_key_base(self.prefix, lock_key)
        while True:
            reply = await self.commands.script("newest", deadline, [index], [base, SCRIPT_LOOK_MAX])
            status = reply[0]
            if status == b"found":
                return reply[1].decode(), reply[2]
            if status == b"none":
                return None
            assert status == b"more", reply  # every member looked at was gone, and is dropped now

    async def _states(self, lock_key: str, members: list[bytes], deadline: float) -> list[tuple[str, bytes]]:
        """(operation_id, raw JSON) of the members whose state still exists; the rest are pruned."""
        ids = [member.decode() for member in members]
        names = [keys.state_key(self.prefix, lock_key, operation_id) for operation_id in ids]
        raws = await self.get_many(names, deadline)
        expired = [operation_id for operation_id, raw in zip(ids, raws, strict=True) if raw is None]
        for operation_id in expired:
            # Atomic and by declared keys: drops the member only if its state is really gone.
            index, state = (
                keys.index_key(self.prefix, lock_key),
                keys.state_key(self.prefix, lock_key, operation_id),
            )
            await self.commands.script("prune", deadline, [index, state], [operation_id])
        return [(operation_id, raw) for operation_id, raw in zip(ids, raws, strict=True) if raw is not None]

    async def pending_for_lock(
        self, lock_key: str, after: str, limit: int, deadline: float
    ) -> tuple[list[tuple[str, bytes]], str | None]:
        """A page of (operation_id, raw JSON) of one lock key, by operation id; the next `after`.

        On one server one page.lua, with at most READ_CHUNK states (fewer than `limit` when it
        looked at SCRIPT_LOOK_MAX members first); on Cluster a ZRANGE, then READ_CHUNK GETs per
        round trip (see `load`). The next `after` is None when the lock key has no more.
        """
        if self.reads_inline:
            reply = await self.commands.script(
                "page",
                deadline,
                [keys.index_key(self.prefix, lock_key)],
                [
                    keys.state_key_base(self.prefix, lock_key),
                    after,
                    max(1, min(limit, READ_CHUNK)),
                    SCRIPT_LOOK_MAX,
                ],
            )
            flat = reply[1:]
            states = [(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
            return states, reply[0].decode() or None
        members = await self.commands.run(deadline, "ZRANGE", keys.index_key(self.prefix, lock_key), 0, -1)
        candidates = sorted(member for member in members if member.decode() > after)
        items: list[tuple[str, bytes]] = []
        for start in range(0, len(candidates), READ_CHUNK):
            items += await self._states(lock_key, candidates[start : start + READ_CHUNK], deadline)
            if len(items) >= limit:
                following = items[limit - 1][0]
                more = start + READ_CHUNK < len(candidates) or len(items) > limit
                return items[:limit], following if more else None
        return items, None

    async def scan_node_count(self) -> int:
        """How many nodes a full SCAN walks: 1, or every master of a Cluster."""
        return await self.backend.scan_node_count()

    async def scan(self, pattern: str, node: int, cursor: int, deadline: float) -> tuple[int, list[bytes]]:
        """One SCAN step on one node over the keys matching `pattern` (never KEYS)."""
        reply = await self.commands.run(
            deadline, "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, node=node
        )
        next_cursor, names = reply
        return int(next_cursor), list(names)

    async def scan_states(self, node: int, cursor: int, deadline: float) -> tuple[int, list[bytes]]:
        """One SCAN step on one node over every state key under the prefix."""
        return await self.scan(keys.state_scan_pattern(self.prefix), node, cursor, deadline)

    async def get_many(self, names: list[Any], deadline: float) -> list[bytes | None]:
        """GET each key in one pipeline (MGET would cross slots on Cluster)."""
        return await self.commands.many([("GET", name) for name in names], deadline)

    async def tails(self, names: list[Any], deadline: float) -> list[bytes]:
        """The last TAIL_BYTES of each state (its version, token and expiry), in one pipeline."""
        return await self.commands.many([("GETRANGE", name, -TAIL_BYTES, -1) for name in names], deadline)

    async def ping(self, deadline: float) -> bool:
        try:
            await self.commands.run(deadline, "PING")
        except errors.RequestError:
            return False
        return True

    # --- ending an operation ------------------------------------------------------------

    async def close_operation(
        self,
        kind: EndKind,
        lock_key: str,
        operation_id: str,
        deadline: float,
        *,
        mode: Mode = "direct",
        token: str = "",
        reason: str = "",
        expect_version: int | None = None,
        refund_by: protocol.RefundBy = "caller",
    ) -> CloseOutcome:
        """Roll back or complete: remove the state, leave the tombstone (close.lua).

        `expect_version`: only if the stored version is that one (else version_conflict).
        `refund_by`, of a direct rollback: "stream" is decided here ("final" "0"); a caller's
        refund is left pending ("p") for `settle`, once this daemon holds the reply.
        """
        expect = "" if expect_version is None else expect_version
        keys = self._operation_keys(lock_key, operation_id)
        args = [kind, mode, token, reason, operation_id, lock_key, self.tomb_ttl_ms, self.lease_ms, expect]
        reply = await self.commands.script("close", deadline, keys, [*args, refund_by])
        status = reply[0].decode()
        if status == "closed":
            raise closed_error(
                operation_id, reply[1].decode(), "completed" if kind == "complete" else "rolled back"
            )
        if status == "conflict":
            stored = int(reply[1])
            raise errors.RequestError(
                protocol.VERSION_CONFLICT,
                f"expected version {expect_version}, stored version is {stored}; nothing was rolled back",
                stored_version=stored,
            )
        final = reply[1].decode()
        assert status in ("done", "replay", "nothing") and final in ("1", "0", "p"), reply
        return CloseOutcome(status, final, reply[2] == b"1", reply[3] or None, reply[4] == b"1")

    async def settle(
        self, lock_key: str, operation_id: str, token: str, decision: Final, deadline: float
    ) -> Settled:
        """Decide who pays a pending rollback's refund (settle.lua).

        final "1": the caller may be told to pay; "0": the stream pays (by this decision, or a
        sweeper's that came first).
        """
        reply = await self.commands.script(
            "settle", deadline, self._outbox_keys(lock_key, operation_id), [token, decision, self.tomb_ttl_ms]
        )
        final = reply[0].decode()
        if final == "1" or final == "0":  # noqa: PLR1714  # each comparison narrows the Literal
            return Settled(final, reply[1] == b"1")
        raise errors.RequestError(protocol.INTERNAL, f"the tombstone of {operation_id} is gone")

    async def outbox(
        self, lock_key: str, operation_id: str, mode: PublishMode, deadline: float
    ) -> OutboxStatus | list[bytes]:
        """outbox.lua: why there is nothing to write, or the event's flat fields to XADD now."""
        reply = await self.commands.script(
            "outbox",
            deadline,
            self._outbox_keys(lock_key, operation_id),
            [mode, self.lease_ms, self.tomb_ttl_ms],
        )
        status = reply[0].decode()
        if status == "publish":
            return list(reply[1:])
        assert status in _OUTBOX_STATUSES, reply
        return status  # type: ignore[no-any-return]

    async def mark_published(self, lock_key: str, operation_id: str, deadline: float) -> None:
        await self.commands.script(
            "published", deadline, self._outbox_keys(lock_key, operation_id)[:2], [self.tomb_ttl_ms]
        )

    async def expire_if_due(
        self, lock_key: str, operation_id: str, early_ms: int, deadline: float
    ) -> ExpireStatus:
        """expire.lua: "expired" (now, by this call), or why not; see ExpireStatus."""
        reply = await self.commands.script(
            "expire",
            deadline,
            self._operation_keys(lock_key, operation_id),
            [operation_id, lock_key, early_ms, self.tomb_ttl_ms, self.lease_ms],
        )
        status = reply[0].decode()
        if status == "expired" and reply[1] != b"1":
            return "expired-outbox"
        assert status in _EXPIRE_STATUSES, reply
        return status  # type: ignore[no-any-return]


STALE_MESSAGES = {
    "completed_count": "save would lower completed_count: progress never moves backwards",
    "results": "save would change results already recorded: recorded draws are immutable",
    "prize_results": "save would change prize_results already recorded: recorded draws are immutable",
    "errors": "save would change errors already recorded: failed draws are append-only",
    "total_count": "save would change total_count: an operation's identity is fixed by its first save",
    "start_time": "save would change start_time: an operation's identity is fixed by its first save",
    "metadata": "save would change metadata (where the price lives): it is fixed by the first save",
}


def closed_error(operation_id: str, kind: str, attempted: str) -> errors.RequestError:
    """operation_closed for an operation ended by `kind` (rollback, complete, expire)."""
    how = {"expire": "expired (its TTL passed)", "rollback": "rolled back", "complete": "completed"}
    return errors.RequestError(
        protocol.OPERATION_CLOSED,
        f"operation {operation_id} was {how.get(kind, f'closed by {kind}')}; it cannot be {attempted}",
        closed_by=kind,
    )


def unix_ms() -> int:
    return int(time.time() * 1000)
