"""All Redis access: the Lua scripts, loaded once and run by EVALSHA through the auto-pipeline.

Every call takes the request's deadline (event-loop time) and retries transient
failures up to it. Scripts return plain tuples; this module turns them into
values or RequestErrors, so no other module knows a script's reply layout.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from drawstate import protocol
from drawstated import errors, keys
from drawstated.config import Config
from drawstated.pipeline import AutoPipeline, Wait
from drawstated.retry import with_retries

SCRIPT_NAMES = ("save", "load", "close", "pending")
#: SCAN COUNT hint per round trip when listing every lock key's operations.
SCAN_COUNT = 500


def _script_source(name: str) -> str:
    return resources.files("drawstated").joinpath(f"lua/{name}.lua").read_text()


@dataclass(frozen=True, slots=True)
class CloseOutcome:
    """`status`: done (removed now), replay (closed before by the same kind); body: removed JSON."""

    status: str
    body: bytes | None


def make_redis(config: Config, url: str) -> Redis:
    """A redis-py client whose own retries are off: retry.py owns them, bounded by deadlines."""
    return Redis.from_url(
        url,
        username=config.redis_username,
        password=config.redis_password,
        max_connections=config.redis_pool_size,
        socket_timeout=config.redis_socket_timeout_s,
        socket_connect_timeout=min(1.0, config.redis_socket_timeout_s),
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
        health_check_interval=0,
    )


class Store:
    """The daemon's view of Redis: save, load, close, list, audit."""

    def __init__(
        self,
        redis: Redis,
        config: Config,
        *,
        on_retry: Callable[[], None] | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = config.prefix
        self.audit_maxlen = config.audit_maxlen
        self._sources = {name: _script_source(name) for name in SCRIPT_NAMES}
        self._shas: dict[str, str] = {}
        self._on_retry = on_retry
        self.pipeline = AutoPipeline(
            redis,
            max_batches=config.redis_pool_size,
            load_scripts=self.load_scripts,
            on_batch=on_batch,
        )
        # SHA1 of each source, as Redis computes it: EVALSHA works before any SCRIPT LOAD
        # when the scripts are cached already, and NOSCRIPT reloads them otherwise.
        self._shas = {
            name: hashlib.sha1(src.encode(), usedforsecurity=False).hexdigest()
            for name, src in self._sources.items()
        }

    async def load_scripts(self, redis: Redis | None = None) -> None:
        """SCRIPT LOAD every script (at start, and after Redis answers NOSCRIPT)."""
        client = redis or self.redis
        for name, source in self._sources.items():
            sha = await client.script_load(source)
            self._shas[name] = sha.decode() if isinstance(sha, bytes) else sha

    async def close(self) -> None:
        await self.pipeline.close()
        await self.redis.aclose()

    # --- plumbing ---------------------------------------------------------------

    async def _run(self, deadline: float, *command: Any, wait: Wait | None = None) -> Any:
        return await with_retries(lambda: self.pipeline.submit(*command, wait=wait), deadline, self._on_retry)

    async def _script(
        self,
        name: str,
        deadline: float,
        keys_: list[str],
        argv: list[Any],
        wait: Wait | None = None,
    ) -> Any:
        command = ("EVALSHA", self._shas[name], len(keys_), *keys_, *argv)
        return await self._run(deadline, *command, wait=wait)

    # --- operations ---------------------------------------------------------------

    async def save(
        self,
        lock_key: str,
        operation_id: str,
        head: bytes,
        *,
        token: str,
        expect_version: int | None,
        completed_count: int,
        ttl_ms: int,
        deadline: float,
        wait: Wait | None = None,
    ) -> tuple[int, bool, int | None]:
        """(version, replayed, replicas_acked); replayed: this token's save had already landed.

        With `wait=(replicas, timeout_ms)` the write is followed by WAIT on its
        connection and replicas_acked is what Redis reported; else None.
        """
        p = self.prefix
        reply = await self._script(
            "save",
            deadline,
            [
                keys.state_key(p, lock_key, operation_id),
                keys.index_key(p, lock_key),
                keys.closed_key(p, lock_key, operation_id),
            ],
            [
                head,
                token,
                "" if expect_version is None else expect_version,
                ttl_ms,
                int(time.time() * 1000),
                operation_id,
                completed_count,
            ],
            wait,
        )
        acked = None
        if wait is not None:
            reply, acked = reply
        status = reply[0].decode()
        if status in ("ok", "replay"):
            return int(reply[1]), status == "replay", acked
        if status == "closed":
            raise errors.RequestError(
                protocol.OPERATION_CLOSED,
                f"operation {operation_id} was rolled back or completed; it cannot be saved again",
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
        """(operation_id, raw JSON) of the requested or newest live operation, or None."""
        p = self.prefix
        keys_ = [keys.index_key(p, lock_key)]
        if operation_id is not None:
            keys_.append(keys.state_key(p, lock_key, operation_id))
        reply = await self._script("load", deadline, keys_, [keys.state_key_base(p, lock_key)])
        if reply is None:
            return None
        return (operation_id or reply[0].decode()), reply[1]

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
        p = self.prefix
        reply = await self._script(
            "pending",
            deadline,
            [keys.index_key(p, lock_key)],
            [keys.state_key_base(p, lock_key), after, limit],
        )
        following = reply[0].decode() or None
        items = [(reply[i].decode(), reply[i + 1]) for i in range(1, len(reply), 2)]
        return items, following

    async def scan_states(self, cursor: int, deadline: float) -> tuple[int, list[bytes]]:
        """One SCAN step over every state key under the prefix (never KEYS)."""
        reply = await self._run(
            deadline,
            "SCAN",
            cursor,
            "MATCH",
            keys.state_scan_pattern(self.prefix),
            "COUNT",
            SCAN_COUNT,
        )
        next_cursor, names = reply  # parsed by redis-py into (int, list)
        return int(next_cursor), list(names)

    async def get_many(self, names: list[bytes], deadline: float) -> list[bytes | None]:
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
        # redis-py parses XRANGE replies into (id, {field: value}) pairs.
        reply = await self._run(deadline, "XRANGE", keys.audit_key(self.prefix), start, "+", "COUNT", count)
        return list(reply)

    async def ping(self, deadline: float) -> bool:
        try:
            await self._run(deadline, "PING")
        except errors.RequestError:
            return False
        return True

    async def server_version(self, deadline: float) -> str:
        info = await self._run(deadline, "INFO", "server")  # parsed into a dict by redis-py
        return str(info.get("redis_version", "unknown"))
