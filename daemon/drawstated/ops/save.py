"""The `save` op, the hot path: a request checked and turned into one EVALSHA, answered from a callback.

`start` runs the first attempt without a task or a coroutine chain: the reply is written from the
Redis reply's done-callback. Only when that attempt meets a transient error (or NOSCRIPT) does a
task take over, handing the failure to the retry policy, which backs off before it resends with the
same token, so however many attempts there are, they count as one save.

A save that extends the state this daemon last saw accepted for its operation is checked by what
it appends (ops/accepted.py says why that is safe); the op remembers each state Redis accepts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import Any

from drawstate import protocol
from drawstate.limits import Limits
from drawstate.model import InvalidState, check_state
from drawstated import errors
from drawstated.codec import StateTooLarge, encode_head
from drawstated.ops import fields
from drawstated.ops.accepted import Accepted, AcceptedStates, CheckedSave, check_append, check_save
from drawstated.ops.context import OpContext, Reply, Request, Respond, loop_time
from drawstated.ops.ending import closed_by_deferred, expired_here
from drawstated.redis.errors import NoScriptError
from drawstated.redis.pipeline import Wait
from drawstated.redis.retry import is_transient
from drawstated.storage.store import SaveOutcome, SaveRequest

log = logging.getLogger("drawstated.ops.save")

#: Share of the deadline a replicated save gives WAIT; the rest is for the write itself.
WAIT_SHARE = 0.5


class Save:
    """The save op, a FastOp: answered from the Redis reply's callback."""

    def __init__(self, ctx: OpContext) -> None:
        self.ctx = ctx
        self._tasks: set[asyncio.Task[None]] = set()
        #: The state Redis last accepted from this daemon, per operation (ops/accepted.py).
        self.accepted = AcceptedStates(ctx.config.accepted_cache_entries, ctx.config.accepted_cache_bytes)

    def plan(self, request: Request, deadline: float) -> tuple[SaveRequest, Accepted]:
        """Check the request and its state; RequestError names what is wrong.

        Returns the save for save.lua and what to remember of its state once Redis accepts it
        (its digest is the `base` a later save may append to).
        """
        config = self.ctx.config
        if request.get("append") is not None:  # nil is absent, as for every optional field
            checked, state = self._appended(request)
        else:
            state = fields.state_map(request)
            previous = self.accepted.get(state.get("lock_key"), state.get("operation_id"))
            checked = checked_save(state, config.limits, previous)
        lock_key, operation_id = state["lock_key"], state["operation_id"]
        if (lock_key, operation_id) in self.ctx.cleanup:
            raise closed_by_deferred(operation_id)
        ttl_s = fields.optional_int(request, "ttl_s", 1, config.max_ttl_s) or config.ttl_s
        wait = None
        if fields.durability(request, config.durability) == "replicated":
            budget_ms = int((deadline - loop_time()) * 1000 * WAIT_SHARE)
            wait = Wait(config.min_replicas, max(1, budget_ms))
        save = SaveRequest(
            lock_key=lock_key,
            operation_id=operation_id,
            head=checked.head,
            token=fields.token(request) or secrets.token_hex(8),
            expect_version=fields.expect_version(request),
            completed_count=state["completed_count"],
            ttl_ms=ttl_s * 1000,
            wait=wait,
            digest=checked.digest,
            expect_digest=checked.expect_digest,
            error_count=checked.accepted.recorded.errors,
        )
        return save, checked.accepted

    def _appended(self, request: Request) -> tuple[CheckedSave, Mapping[str, Any]]:
        """A save sending only the draws it appends to the state this daemon last saw accepted.

        base_unknown when this daemon does not hold that state (a restart, an evicted entry, a
        later save of the operation, another daemon's): the client sends the whole state instead.
        """
        if request.get("state") is not None:
            raise errors.invalid("a save carries state or append, not both")
        append = fields.append_map(request, self.ctx.config.limits)
        previous = self.accepted.get(append["lock_key"], append["operation_id"])
        if previous is None or previous.digest != append["base"]:
            raise errors.RequestError(
                protocol.BASE_UNKNOWN,
                "this daemon does not hold the state this save appends to; send the whole state",
            )
        try:
            return check_append(append, self.ctx.config.limits, previous), append
        except (StateTooLarge, InvalidState) as exc:
            raise refused_state(exc) from exc

    def start(self, request: Request, deadline: float, respond: Respond) -> None:
        """The hot path: `respond` gets the reply fields or the RequestError, exactly once."""
        try:
            save, accepted = self.plan(request, deadline)
            base = accepted.digest if fields.flag(request, "want_base") else None
        except errors.RequestError as exc:
            respond(exc)
            return
        future = self.ctx.store.start_save(save, deadline)
        future.add_done_callback(lambda done: self._finish(done, save, accepted, base, deadline, respond))

    def _finish(
        self,
        done: asyncio.Future[Any],
        save: SaveRequest,
        accepted: Accepted,
        base: str | None,
        deadline: float,
        respond: Respond,
    ) -> None:
        if done.cancelled():
            respond(errors.deadline())
            return
        error = done.exception()
        if error is None:
            try:
                outcome = self.ctx.store.save_result(save, done.result())
                self._remember(save, accepted, outcome)
                respond(self.reply(save, outcome, base))
            except errors.RequestError as exc:
                self._refused(save, exc)
                respond(exc)
            return
        if is_transient(error) or isinstance(error, NoScriptError):
            task = asyncio.get_running_loop().create_task(
                self._resend(save, accepted, base, error, deadline, respond)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        log.error("save failed", exc_info=error)
        respond(errors.internal(error))

    async def _resend(
        self,
        save: SaveRequest,
        accepted: Accepted,
        base: str | None,
        failed: BaseException,
        deadline: float,
        respond: Respond,
    ) -> None:
        """The first attempt failed: the retry policy takes over, with the same token (one save)."""
        try:
            outcome = await self.ctx.store.save(save, deadline, failed=failed)
            self._remember(save, accepted, outcome)
            respond(self.reply(save, outcome, base))
        except errors.RequestError as exc:
            self._refused(save, exc)
            respond(exc)
        except Exception as exc:
            log.exception("save failed")
            respond(errors.internal(exc))

    def _remember(self, save: SaveRequest, accepted: Accepted, outcome: SaveOutcome) -> None:
        """A state save.lua wrote (not a replay: that stored nothing) is what the next save extends."""
        if not outcome.replayed:
            self.accepted.put(save.lock_key, save.operation_id, accepted)

    def _refused(self, save: SaveRequest, exc: errors.RequestError) -> None:
        if exc.code == protocol.OPERATION_CLOSED:
            self.accepted.discard(save.lock_key, save.operation_id)
        expired_here(self.ctx, save.lock_key, save.operation_id, exc)

    def reply(self, save: SaveRequest, outcome: SaveOutcome, base: str | None = None) -> Reply:
        """The ok reply's fields; durability_not_met when too few replicas acknowledged.

        `base`, when the request asked for it, is answered only if this save wrote its state: a
        replay stored the first attempt's, which this daemon does not know to be the same.
        """
        version, replayed, acked = outcome.version, outcome.replayed, outcome.replicas
        if log.isEnabledFor(logging.DEBUG):
            log.debug("saved", extra={"lock_key": save.lock_key, "operation_id": save.operation_id,
                                      "version": version, "replayed": replayed})  # fmt: skip
        reply: Reply = {"version": version, "ttl_s": save.ttl_ms // 1000}
        if base is not None and not replayed:
            reply["base"] = base
        if save.wait is None:
            return reply
        reply["replicas"] = acked
        min_replicas = self.ctx.config.min_replicas
        if acked is None or acked < min_replicas:
            raise errors.RequestError(
                protocol.DURABILITY_NOT_MET,
                f"saved as version {version} but {acked} of {min_replicas} "
                "replica(s) acknowledged in time; retrying the save is safe",
                version=version,
                replicas=acked,
            )
        return reply


def checked_head(state: Mapping[str, Any], limits: Limits) -> bytes:
    """A state from a client, checked and encoded (refused_state's errors)."""
    try:
        check_state(state, limits)
        return encode_head(state, limits)
    except (StateTooLarge, InvalidState) as exc:
        raise refused_state(exc) from exc


def checked_save(state: Mapping[str, Any], limits: Limits, previous: Accepted | None) -> CheckedSave:
    """checked_head for a save: by what it appends to `previous` when it can (the same answers)."""
    try:
        return check_save(state, limits, previous)
    except (StateTooLarge, InvalidState) as exc:
        raise refused_state(exc) from exc


def refused_state(exc: StateTooLarge | InvalidState) -> errors.RequestError:
    """Why a client's state is refused: invalid_request past the size cap, else draw_state_corrupted."""
    if isinstance(exc, StateTooLarge):
        return errors.invalid(str(exc))
    return errors.corrupted(str(exc), source="request")
