"""Redis Cluster routing: each command goes to the master owning its key's slot.

One auto-pipeline per master, so a tick's commands are split per node and each
node gets one write; WAIT lands on the connection that made the writes. The
slot table comes from CLUSTER SLOTS and is refreshed on MOVED and on a lost
node; ASK is followed with ASKING on the target node, in the same batch.
A lock key's keys share a hash tag, so every script runs on one node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from drawstated.redis.errors import AskError, Redirect
from drawstated.redis.pipeline import AutoPipeline, Wait
from drawstated.redis.resp import Endpoint, connect

log = logging.getLogger("drawstated.redis.cluster")

SLOTS = 16384
#: Redirections (MOVED/ASK) followed for one command before giving up with the last error.
MAX_REDIRECTS = 5
#: Commands whose first key is their second argument; EVALSHA's is its fourth.
_KEYLESS = frozenset({b"PING", b"INFO", b"SCRIPT", b"WAIT"})


def _key_of(command: tuple[Any, ...]) -> Any:
    name = command[0].upper() if isinstance(command[0], bytes) else str(command[0]).upper().encode()
    if name in _KEYLESS or len(command) < 2:
        return None
    if name == b"EVALSHA":
        return command[3] if int(command[2]) > 0 else None
    return command[1]


def _encode(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode()


class ClusterRouter:
    """The cluster counterpart of AutoPipeline: the same `submit`, routed by slot."""

    def __init__(
        self,
        seeds: list[tuple[str, int]],
        template: Endpoint,
        make_pipeline: Callable[[Endpoint], AutoPipeline],
        *,
        connect_timeout_s: float,
        stall_timeout_s: float,
    ) -> None:
        self._seeds = seeds
        self._template = template
        self._make_pipeline = make_pipeline
        self._connect_timeout_s = connect_timeout_s
        self._stall_timeout_s = stall_timeout_s
        self._slots: list[str | None] = [None] * SLOTS
        self._nodes: dict[str, AutoPipeline] = {}
        self.masters: list[str] = []
        self._refreshing: asyncio.Task[None] | None = None

    # --- topology ------------------------------------------------------------------

    def refresh(self) -> asyncio.Task[None]:
        """Re-read the slot table (at most one refresh at a time)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
            self._refreshing.add_done_callback(_refresh_done)
        return self._refreshing

    async def _refresh(self) -> None:
        known = [tuple(name.rsplit(":", 1)) for name in self.masters]
        candidates = [(host, int(port)) for host, port in known] + self._seeds
        errors = []
        for host, port in dict.fromkeys(candidates):
            endpoint = dataclasses.replace(self._template, host=host, port=port, path=None)
            try:
                conn = await connect(
                    endpoint, connect_timeout_s=self._connect_timeout_s, stall_timeout_s=self._stall_timeout_s
                )
                try:
                    ranges = await asyncio.wait_for(conn.call("CLUSTER", "SLOTS"), self._stall_timeout_s)
                finally:
                    conn.close()
            except (RedisConnectionError, ResponseError, TimeoutError) as exc:
                errors.append(f"{host}:{port}: {exc}")
                continue
            self._apply(ranges)
            return
        raise RedisConnectionError(f"no cluster node answered CLUSTER SLOTS ({'; '.join(errors)})")

    def _apply(self, ranges: list[Any]) -> None:
        slots: list[str | None] = [None] * SLOTS
        masters = set()
        for first, last, master, *_ in ranges:
            name = f"{master[0].decode()}:{int(master[1])}"
            masters.add(name)
            slots[int(first) : int(last) + 1] = [name] * (int(last) - int(first) + 1)
        if sorted(masters) != self.masters:
            log.warning("cluster masters: %s", ", ".join(sorted(masters)))
        self._slots, self.masters = slots, sorted(masters)

    def _pipeline(self, name: str) -> AutoPipeline:
        pipeline = self._nodes.get(name)
        if pipeline is None:
            host, port = name.rsplit(":", 1)
            endpoint = dataclasses.replace(self._template, host=host, port=int(port), path=None)
            pipeline = self._nodes[name] = self._make_pipeline(endpoint)
        return pipeline

    # --- routing -------------------------------------------------------------------

    def _by_key(self, command: tuple[Any, ...]) -> Callable[[], str | None]:
        key = _key_of(command)
        if key is None:
            return lambda: self.masters[0] if self.masters else None
        slot = key_slot(_encode(key))
        return lambda: self._slots[slot]

    def submit(self, *command: Any, wait: Wait | None = None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._route(future, self._by_key(command), None, command, wait, 0)
        return future

    def submit_to(self, node_index: int, *command: Any) -> asyncio.Future[Any]:
        """A command for one master by its index in `masters` (SCAN walks them in turn)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def pick() -> str | None:
            return self.masters[node_index] if node_index < len(self.masters) else None

        self._route(future, pick, None, command, None, 0)
        return future

    async def scan_node_count(self) -> int:
        if not self.masters:
            await self.refresh()
        return len(self.masters)

    def _route(
        self, future: asyncio.Future[Any], pick: Callable[[], str | None], node: str | None,
        command: tuple[Any, ...], wait: Wait | None, redirects: int, *, asking: bool = False,
    ) -> None:  # fmt: skip
        """Send to `node`, else to what `pick` says; with no topology yet, learn it first."""
        if future.done():
            return
        node = node or pick()
        if node is None:
            self.refresh().add_done_callback(
                lambda done: self._after_refresh(done, future, pick, command, wait)
            )
            return
        pipeline = self._pipeline(node)
        if asking:
            pipeline.submit("ASKING").add_done_callback(_ignore)
        inner = pipeline.submit(*command, wait=wait)
        inner.add_done_callback(lambda done: self._on_reply(done, future, pick, command, wait, redirects))

    def _after_refresh(
        self, done: asyncio.Task[None], future: asyncio.Future[Any], pick: Callable[[], str | None],
        command: tuple[Any, ...], wait: Wait | None,
    ) -> None:  # fmt: skip
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if future.done():
            return
        node = pick() if error is None else None
        if node is None:
            future.set_exception(error or RedisConnectionError("the cluster has no master for this command"))
        else:
            self._route(future, pick, node, command, wait, 0)

    def _on_reply(
        self, inner: asyncio.Future[Any], future: asyncio.Future[Any], pick: Callable[[], str | None],
        command: tuple[Any, ...], wait: Wait | None, redirects: int,
    ) -> None:  # fmt: skip
        if inner.cancelled():
            if not future.done():
                future.cancel()
            return
        error = inner.exception()
        if future.done():
            return
        if isinstance(error, Redirect) and redirects < MAX_REDIRECTS:
            asking = isinstance(error, AskError)
            if not asking:
                self._slots[error.slot] = error.target
                self.refresh()  # a slot moved: the rest of the table may have too
            self._route(future, pick, error.target, command, wait, redirects + 1, asking=asking)
            return
        if isinstance(error, RedisConnectionError | OSError):
            self.refresh()  # a node went away: a replica may be taking over
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(inner.result())

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for pipeline in self._nodes.values():
            await pipeline.close()


def _ignore(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # ASKING's own reply: read, so it is never "unretrieved"


def _refresh_done(task: asyncio.Task[None]) -> None:
    """A refresh nobody awaits (after MOVED or a lost node) that failed: said once, at WARNING."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("cluster slot table not refreshed", extra={"error": f"{type(error).__name__}: {error}"})
