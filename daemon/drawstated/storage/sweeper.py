"""The sweeper: the background task that makes every operation end, and every ending reach the stream.

Every `--sweep-interval` one daemon of those sharing a Redis (a short lease decides which) walks
Redis with SCAN, on every master of a Cluster:

- **expire**: a state past its logical expiry (`_expires`, set by each save to now + `ttl_s`) is
  ended by expire.lua, which records its last state as an `expire` event. The key itself lives
  `--expire-grace` longer, so this still works after every daemon was down for a while;
- **outbox**: an ended operation whose event is not in the stream yet (its daemon died or lost
  Redis first) is written now, once the marker's lease is over (outbox.lua);
- **trim**: the stream is cut back toward `--audit-maxlen`, never past an event a consumer group
  still owes (trim.lua); when a lagging group holds it above the cap, a warning says so.

Every step is an atomic script, so several sweepers at once (a lease that lapsed mid-sweep) still
expire each operation exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets

from drawstated import keys
from drawstated.config import Config
from drawstated.errors import RequestError
from drawstated.stats import SweepCounts
from drawstated.storage.store import PublishMode, Store, unix_ms
from drawstated.storage.stream import OutcomeStream, publish

log = logging.getLogger("drawstated.storage.sweeper")

#: Deadline of one step (a SCAN page, a batch of scripts) of a sweep.
STEP_DEADLINE_S = 5.0
#: A state whose expiry is this close (by this daemon's clock) is handed to expire.lua, which
#: judges by Redis's clock: so a daemon whose clock runs behind still expires on time.
CLOCK_SLACK_MS = 2_000
#: Entries trim.lua removes per call, and calls per sweep.
TRIM_BATCH = 1_000
TRIM_CALLS_PER_SWEEP = 100
_EXPIRES_RE = re.compile(rb',"_expires":(\d+)}$')


class Sweeper:
    def __init__(self, store: Store, stream: OutcomeStream, config: Config, counts: SweepCounts) -> None:
        self.store = store
        self.stream = stream
        self.config = config
        self.counts = counts
        self._owner = secrets.token_hex(8)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Sweep now rather than at the next interval (tests, and start-up)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                if await self._take_lease():
                    await self.sweep()
            except Exception as exc:  # never let one bad sweep end sweeping
                self.counts.errors += 1
                log.log(
                    _level(exc),
                    "sweep failed; next one at the interval",
                    extra={"error": f"{type(exc).__name__}: {exc}"},
                )
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.sweep_interval_s)

    async def _take_lease(self) -> bool:
        """One sweeper per interval across the daemons sharing Redis.

        The lease lasts half an interval, so whichever daemon comes next after it sweeps: the gap
        between sweeps stays within one interval while any daemon runs.
        """
        lease_ms = max(1, int(self.config.sweep_interval_s * 500))
        taken = await self.store.commands.run(
            self._deadline(), "SET", keys.sweeper_key(self.store.prefix), self._owner, "NX", "PX", lease_ms
        )
        return taken is not None

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + STEP_DEADLINE_S

    async def sweep(self) -> dict[str, int]:
        """One full sweep; returns what it did."""
        nodes = await self.store.scan_node_count()
        done = {"expired": 0, "published": 0, "trimmed": 0}
        for node in range(nodes):
            done["expired"] += await self._expire_node(node)
            done["published"] += await self._outbox_node(node)
        done["trimmed"] = await self._trim()
        counts = self.counts
        counts.sweeps += 1
        counts.expired += done["expired"]
        counts.published += done["published"]
        counts.trimmed += done["trimmed"]
        if any(done.values()):
            log.info("sweep", extra=done)
        return done

    async def _expire_node(self, node: int) -> int:
        early_ms = int(self.config.sweep_interval_s * 2000) + CLOCK_SLACK_MS
        expired = 0
        cursor = 0
        while True:
            cursor, names = await self.store.scan(
                keys.state_scan_pattern(self.store.prefix), node, cursor, self._deadline()
            )
            if names:
                tails = await self.store.tails(names, self._deadline())
                now = unix_ms()
                for name, tail in zip(names, tails, strict=True):
                    match = _EXPIRES_RE.search(tail)
                    if match is not None and int(match[1]) > now + CLOCK_SLACK_MS:
                        continue
                    expired += await self._expire_one(name.decode(), early_ms)
            if cursor == 0:
                return expired

    async def _expire_one(self, name: str, early_ms: int) -> int:
        try:
            lock_key, operation_id = keys.parse_state_key(self.store.prefix, name)
        except ValueError:
            return 0
        status = await self.store.expire_if_due(lock_key, operation_id, early_ms, self._deadline())
        if status == "expired-outbox":
            await self._publish(lock_key, operation_id, "owner")
        if status in ("expired", "expired-outbox"):
            log.info("operation expired", extra={"lock_key": lock_key, "operation_id": operation_id})
            return 1
        return 0

    async def _outbox_node(self, node: int) -> int:
        published = 0
        cursor = 0
        while True:
            cursor, names = await self.store.scan(
                keys.outbox_scan_pattern(self.store.prefix), node, cursor, self._deadline()
            )
            for name in names:
                try:
                    lock_key, operation_id = keys.parse_outbox_key(self.store.prefix, name.decode())
                except ValueError:
                    continue
                published += await self._publish(lock_key, operation_id, "sweeper")
            if cursor == 0:
                return published

    async def _publish(self, lock_key: str, operation_id: str, mode: PublishMode) -> int:
        try:
            status = await publish(self.store, self.stream, lock_key, operation_id, mode, self._deadline())
        except Exception as exc:  # one event Redis refuses must not stop the sweep of the others
            log.log(
                _level(exc),
                "outcome event still not written",
                extra={"lock_key": lock_key, "operation_id": operation_id, "error": type(exc).__name__},
            )
            return 0
        if status == "published" and mode == "sweeper":
            log.warning(
                "wrote the outcome event a daemon left unwritten",
                extra={"lock_key": lock_key, "operation_id": operation_id},
            )
        return int(status == "published")

    async def _trim(self) -> int:
        cap = self.config.audit_maxlen
        trimmed = 0
        held = False
        length = 0
        for _ in range(TRIM_CALLS_PER_SWEEP):
            removed, length, held = await self.stream.trim(cap, TRIM_BATCH, self._deadline())
            trimmed += removed
            if removed == 0 or length <= cap:
                break
        counts = self.counts
        if held and not counts.stream_held:
            log.warning(
                "outcome stream over its cap: a consumer group has not acknowledged older events",
                extra={"length": length, "cap": cap},
            )
        elif counts.stream_held and not held:
            log.warning("outcome stream back within its cap", extra={"length": length, "cap": cap})
        counts.stream_length, counts.stream_held = length, held
        return trimmed


def _level(exc: Exception) -> int:
    """DEBUG for a Redis outage (the outage log has said it once, retry.OutageLog), else WARNING."""
    return logging.DEBUG if isinstance(exc, RequestError) and exc.retryable else logging.WARNING
