"""All Redis access: the Lua scripts, loaded once and run by EVALSHA through the auto-pipeline.

Every call takes the request's deadline (event-loop time) and retries transient
failures up to it. Scripts return plain tuples; this module turns them into
values or RequestErrors, so no other module knows a script's reply layout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import ResponseError

from drawstate import protocol
from drawstated import errors, keys
from drawstated.config import Config
from drawstated.pipeline import Backend, Wait
from drawstated.retry import is_transient, with_retries

log = logging.getLogger("drawstated.store")

SCRIPT_NAMES = ("save", "close", "prune")
#: Index members whose state keys are read per round trip by load and pending.
READ_CHUNK = 16
#: SCAN COUNT hint per round trip when listing every lock key's operations.
SCAN_COUNT = 500
#: Deadline for loading the scripts when no request deadline applies (start-up).
SCRIPT_LOAD_DEADLINE_S = 5.0


def _script_source(name: str) -> str:
    return resources.files("drawstated").joinpath(f"lua/{name}.lua").read_text()


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


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    """`status`: done (removed now), replay (closed before by the same kind); body: removed JSON."""

    status: str
    body: bytes | None


class Store:
    """The daemon's view of Redis: save, load, close, list, audit."""

    def __init__(
        self, pipeline: Backend, config: Config, *, on_retry: Callable[[], None] | None = None
    ) -> None:
        self.pipeline = pipeline
        self.prefix = config.prefix
        self.audit_maxlen = config.audit_maxlen
        self._on_retry = on_retry
        self._sources = {name: _script_source(name) for name in SCRIPT_NAMES}
        # SHA1 of each source, as Redis names scripts: EVALSHA works at once when Redis
        # has them cached, and a NOSCRIPT reply loads them.
        self._shas = {
            name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
            for name, src in self._sources.items()
        }

    async def load_scripts(self, deadline: float | None = None) -> None:
        """SCRIPT LOAD every script (at start, and after Redis answers NOSCRIPT)."""
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + SCRIPT_LOAD_DEADLINE_S
        for node in range(await self.pipeline.scan_node_count()):
            for source in self._sources.values():
                await self._run(deadline, "SCRIPT", "LOAD", source, node=node)

    async def close(self) -> None:
        await self.pipeline.close()

    # --- plumbing ---------------------------------------------------------------

    async def _run(
        self, deadline: float, *command: Any, wait: Wait | None = None, node: int | None = None
    ) -> Any:
        """One command: a plain first attempt (the hot path), tenacity only once it has failed.

        `node` sends it to one node of the topology (SCAN, SCRIPT LOAD on Cluster) instead of by key.
        """
        loop = asyncio.get_running_loop()

        def send() -> asyncio.Future[Any]:
            if node is None:
                return self.pipeline.submit(*command, wait=wait)
            return self.pipeline.submit_to(node, *command)

        future = send()
        timer = loop.call_at(deadline, _expire, future)
        try:
            return await future
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller was cancelled, not our deadline
            raise errors.deadline() from None
        except Exception as exc:
            if not is_transient(exc):
                raise
        finally:
            timer.cancel()
        if self._on_retry is not None:
            self._on_retry()
        return await with_retries(send, deadline, self._on_retry, first_failed=True)

    async def _script(
        self,
        name: str,
        deadline: float,
        keys_: list[str],
        argv: list[Any],
        wait: Wait | None = None,
    ) -> Any:
        return await self._evalsha(deadline, ("EVALSHA", self._shas[name], len(keys_), *keys_, *argv), wait)

    async def _evalsha(self, deadline: float, command: tuple[Any, ...], wait: Wait | None = None) -> Any:
        """Run a script command; on NOSCRIPT load the scripts and send it once more."""
        try:
            return await self._run(deadline, *command, wait=wait)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted or flushed its script cache: load, then send once more.
        log.info("redis lost its scripts (NOSCRIPT); reloading")
        await self.load_scripts(deadline)
        return await self._run(deadline, *command, wait=wait)

    # --- operations ---------------------------------------------------------------

    def save_command(self, save: SaveRequest) -> tuple[Any, ...]:
        """The EVALSHA of save.lua for one save (see its header for KEYS and ARGV)."""
        p = self.prefix
        return (
            "EVALSHA",
            self._shas["save"],
            3,
            keys.state_key(p, save.lock_key, save.operation_id),
            keys.index_key(p, save.lock_key),
            keys.closed_key(p, save.lock_key, save.operation_id),
            save.head,
            save.token,
            "" if save.expect_version is None else save.expect_version,
            save.ttl_ms,
            int(time.time() * 1000),
            save.operation_id,
            save.completed_count,
        )

    def start_save(self, save: SaveRequest, deadline: float) -> asyncio.Future[Any]:
        """One attempt, no retry (the hot path): the raw reply's future, cancelled at the deadline.

        A caller that sees a transient error or NOSCRIPT falls back to `save`, which
        retries with the same token, so the attempts count as one save.
        """
        future = self.pipeline.submit(*self.save_command(save), wait=save.wait)
        timer = asyncio.get_running_loop().call_at(deadline, _expire, future)
        future.add_done_callback(lambda _: timer.cancel())
        return future

    async def save(self, save: SaveRequest, deadline: float) -> tuple[int, bool, int | None]:
        """Run save.lua with retries; (version, replayed, replicas_acked)."""
        return self.save_result(save, await self._evalsha(deadline, self.save_command(save), save.wait))

    def save_result(self, save: SaveRequest, reply: Any) -> tuple[int, bool, int | None]:
        """(version, replayed, replicas_acked) from save.lua's reply; RequestError for a refusal.

        replayed: this token's save had already landed. replicas_acked: what WAIT
        reported when the save asked for replication, else None.
        """
        operation_id, expect_version = save.operation_id, save.expect_version
        acked = None
        if save.wait is not None:
            reply, acked = reply
        status = reply[0].decode()
        if status in ("ok", "replay"):
            return int(reply[1]), status == "replay", acked
        if status == "closed":
            kind = reply[1].decode()
            raise errors.RequestError(
                protocol.OPERATION_CLOSED,
                f"operation {operation_id} was closed by {kind}; it cannot be saved again",
                closed_by=kind,
            )
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
            raise errors.RequestError(
                protocol.STALE_STATE,
                f"save would move {field_name} backwards: draws already recorded are immutable",
                field=field_name,
            )
        raise errors.corrupted(f"stored state of {operation_id} is corrupted: {reply[1].decode()}")

    async def load(
        self, lock_key: str, operation_id: str | None, deadline: float
    ) -> tuple[str, bytes] | None:
        """(operation_id, raw JSON) of the requested or newest live operation, or None.

        Without an id: the index newest first, then the state keys by name. Every
        key is named in its own command, never read from inside a script: while
        Cluster migrates the lock key's slot, a script's undeclared reads would
        miss keys already moved, where a command is redirected to them (ASK).
        """
        p = self.prefix
        if operation_id is not None:
            raw = await self._run(deadline, "GET", keys.state_key(p, lock_key, operation_id))
            return None if raw is None else (operation_id, raw)
        members = await self._run(deadline, "ZREVRANGE", keys.index_key(p, lock_key), 0, -1)
        for start in range(0, len(members), READ_CHUNK):
            found = await self._states(lock_key, members[start : start + READ_CHUNK], deadline)
            if found:
                return found[0]
        return None

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
            await self._script("prune", deadline, [index, state], [operation_id])
        return [(operation_id, raw) for operation_id, raw in zip(ids, raws, strict=True) if raw is not None]

    async def close_operation(
        self, kind: str, lock_key: str, operation_id: str, ttl_ms: int, deadline: float
    ) -> CloseOutcome:
        """Roll back or complete: remove the state, leave the tombstone (close.lua)."""
        p = self.prefix
        reply = await self._script(
            "close",
            deadline,
            [
                keys.state_key(p, lock_key, operation_id),
                keys.index_key(p, lock_key),
                keys.closed_key(p, lock_key, operation_id),
            ],
            [kind, ttl_ms, operation_id],
        )
        status = reply[0].decode()
        if status == "closed":
            other = reply[1].decode()
            raise errors.RequestError(
                protocol.OPERATION_CLOSED,
                f"operation {operation_id} was already closed by {other}; cannot {kind} it",
                closed_by=other,
            )
        return CloseOutcome(status, reply[1] or None)

    async def pending_for_lock(
        self, lock_key: str, after: str, limit: int, deadline: float
    ) -> tuple[list[tuple[str, bytes]], str | None]:
        """A page of (operation_id, raw JSON) of one lock key, by operation id; next `after`."""
        members = await self._run(deadline, "ZRANGE", keys.index_key(self.prefix, lock_key), 0, -1)
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
        return await self.pipeline.scan_node_count()

    async def scan_states(self, node: int, cursor: int, deadline: float) -> tuple[int, list[bytes]]:
        """One SCAN step on one node over every state key under the prefix (never KEYS)."""
        pattern = keys.state_scan_pattern(self.prefix)
        reply = await self._run(deadline, "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, node=node)
        next_cursor, names = reply
        return int(next_cursor), list(names)

    async def get_many(self, names: list[Any], deadline: float) -> list[bytes | None]:
        """GET each key in one pipeline (MGET would cross slots on Cluster)."""

        async def attempt() -> list[bytes | None]:
            return list(await asyncio.gather(*(self.pipeline.submit("GET", n) for n in names)))

        return await with_retries(attempt, deadline, self._on_retry) if names else []

    async def audit(self, event: Mapping[str, Any], deadline: float) -> None:
        """Append one event to the capped audit stream."""
        fields: list[Any] = []
        for name, value in event.items():
            fields += [name, value]
        await self._run(
            deadline,
            "XADD",
            keys.audit_key(self.prefix),
            "MAXLEN",
            "~",
            self.audit_maxlen,
            "*",
            *fields,
        )

    async def read_audit(
        self, start: str, count: int, deadline: float
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply = await self._run(deadline, "XRANGE", keys.audit_key(self.prefix), start, "+", "COUNT", count)
        return [(entry_id, dict(zip(flat[::2], flat[1::2], strict=True))) for entry_id, flat in reply]

    async def ping(self, deadline: float) -> bool:
        try:
            await self._run(deadline, "PING")
        except errors.RequestError:
            return False
        return True


def _expire(future: asyncio.Future[Any]) -> None:
    """Deadline timer: give up waiting (the reply, if it comes, is read and dropped)."""
    if not future.done():
        future.cancel()
