"""The save op, the hot path: a request checked and turned into one EVALSHA, answered from a callback.

`start` runs the first attempt without a task or a coroutine chain: the reply
is written from the Redis reply's done-callback. Only when that attempt meets
a transient error (or NOSCRIPT) does a task take over with the retrying path,
`save`, which reuses the same token, so however many attempts there are,
they count as one save.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from drawstate import protocol
from drawstate.limits import Limits
from drawstate.model import InvalidState, check_state
from drawstated import errors, requests
from drawstated.cleanup import DeferredCleanup
from drawstated.codec import StateTooLarge, encode_head
from drawstated.commands import is_noscript
from drawstated.config import Config
from drawstated.outcomes import Publisher
from drawstated.retry import is_transient
from drawstated.store import SaveOutcome, SaveRequest, Store

log = logging.getLogger("drawstated.saving")

#: Share of the deadline a replicated save gives WAIT; the rest is for the write itself.
WAIT_SHARE = 0.5
Respond = Callable[[dict[str, Any] | errors.RequestError], None]


class Saver:
    def __init__(self, config: Config, store: Store, cleanup: DeferredCleanup, publisher: Publisher) -> None:
        self.config = config
        self.store = store
        self.cleanup = cleanup
        self.publisher = publisher
        self._tasks: set[asyncio.Task[None]] = set()

    def plan(self, request: Mapping[str, Any], deadline: float) -> SaveRequest:
        """Check the request and its state; RequestError names what is wrong."""
        state = requests.state_map(request)
        head = checked_head(state, self.config.limits)
        lock_key, operation_id = state["lock_key"], state["operation_id"]
        if (lock_key, operation_id) in self.cleanup:
            raise closed_by_deferred(operation_id)
        ttl_s = requests.optional_int(request, "ttl_s", 1, self.config.max_ttl_s) or self.config.ttl_s
        wait = None
        if requests.durability(request, self.config.durability) == "replicated":
            budget_ms = int((deadline - asyncio.get_running_loop().time()) * 1000 * WAIT_SHARE)
            wait = (self.config.min_replicas, max(1, budget_ms))
        return SaveRequest(
            lock_key=lock_key,
            operation_id=operation_id,
            head=head,
            token=requests.token(request) or secrets.token_hex(8),
            expect_version=requests.expect_version(request),
            completed_count=state["completed_count"],
            ttl_ms=ttl_s * 1000,
            wait=wait,
        )

    async def save(self, request: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        """The whole save with retries (the op handler for callers that want a coroutine)."""
        save = self.plan(request, deadline)
        try:
            return self.reply(save, await self.store.save(save, deadline))
        except errors.RequestError as exc:
            self._refused(save, exc)
            raise

    def start(self, request: Mapping[str, Any], deadline: float, respond: Respond) -> None:
        """The hot path: `respond` gets the reply fields or the RequestError, exactly once."""
        try:
            save = self.plan(request, deadline)
        except errors.RequestError as exc:
            respond(exc)
            return
        future = self.store.start_save(save, deadline)
        future.add_done_callback(lambda done: self._finish(done, save, deadline, respond))

    def _finish(
        self, done: asyncio.Future[Any], save: SaveRequest, deadline: float, respond: Respond
    ) -> None:
        if done.cancelled():
            respond(errors.deadline())
            return
        error = done.exception()
        if error is None:
            try:
                respond(self.reply(save, self.store.save_result(save, done.result())))
            except errors.RequestError as exc:
                self._refused(save, exc)
                respond(exc)
            return
        if is_transient(error) or is_noscript(error):
            task = asyncio.get_running_loop().create_task(self._retry(save, deadline, respond))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        log.error("save failed", exc_info=error)
        respond(errors.internal(error))

    async def _retry(self, save: SaveRequest, deadline: float, respond: Respond) -> None:
        try:
            respond(self.reply(save, await self.store.save(save, deadline)))
        except errors.RequestError as exc:
            self._refused(save, exc)
            respond(exc)
        except Exception as exc:
            log.exception("save failed")
            respond(errors.internal(exc))

    def _refused(self, save: SaveRequest, exc: errors.RequestError) -> None:
        """A save that found its operation expired may have expired it just now; where the
        script could not write the event itself (Cluster), write it now, not a lease later."""
        if exc.details.get("closed_by") == "expire" and not self.store.events_inline:
            self.publisher.schedule(save.lock_key, save.operation_id)

    def reply(self, save: SaveRequest, outcome: SaveOutcome) -> dict[str, Any]:
        """The ok reply's fields; durability_not_met when too few replicas acknowledged."""
        version, replayed, acked = outcome.version, outcome.replayed, outcome.replicas
        if log.isEnabledFor(logging.DEBUG):
            log.debug("saved", extra={"lock_key": save.lock_key, "operation_id": save.operation_id,
                                      "version": version, "replayed": replayed})  # fmt: skip
        fields: dict[str, Any] = {"version": version, "ttl_s": save.ttl_ms // 1000}
        if save.wait is None:
            return fields
        fields["replicas"] = acked
        if acked is None or acked < self.config.min_replicas:
            raise errors.RequestError(
                protocol.DURABILITY_NOT_MET,
                f"saved as version {version} but {acked} of {self.config.min_replicas} "
                "replica(s) acknowledged in time; retrying the save is safe",
                version=version,
                replicas=acked,
            )
        return fields


def checked_head(state: Mapping[str, Any], limits: Limits) -> bytes:
    """A state from a client, checked and encoded: draw_state_corrupted, or invalid_request past the cap."""
    try:
        check_state(state, limits)
        return encode_head(state, limits)
    except StateTooLarge as exc:
        raise errors.invalid(str(exc)) from exc
    except InvalidState as exc:
        raise errors.corrupted(str(exc), source="request") from exc


def closed_by_deferred(operation_id: str) -> errors.RequestError:
    return errors.RequestError(
        protocol.OPERATION_CLOSED,
        f"operation {operation_id} is being rolled back (deferred cleanup); it cannot be used",
        closed_by="rollback",
    )
