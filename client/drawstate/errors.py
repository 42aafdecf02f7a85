"""The client's exception hierarchy: one class per wire error code, all under DrawStateError.

A game catches `DrawStateError` and branches on `.retryable`, or catches the
precise class (`VersionConflict`, `OperationClosed`, ...) where the flow differs.
Caller mistakes are also ValueErrors (`InvalidDrawState`, and `InvalidState` from
local checks); `ERROR_CLASSES` and `RETRYABLE` are the one table of wire codes.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DrawStateError(Exception):
    """Base of every drawstate failure; `code` is the wire code, `retryable` says if a retry may help."""

    code: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str = "", *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        #: Extra fields the daemon sent with the error (e.g. `stored_version`).
        self.details: dict[str, Any] = details or {}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidRequest(DrawStateError):
    code = "invalid_request"


class DrawStateCorrupted(DrawStateError):
    """A state stored in Redis breaks a DrawState rule: the data is bad, not the call."""

    code = "draw_state_corrupted"


class InvalidDrawState(DrawStateError, ValueError):
    """The state this call sent breaks a DrawState rule (a caller mistake, `details["field"]` says
    which field when the daemon names it). The wire code is still draw_state_corrupted, with
    `source: "request"`."""

    code = "draw_state_corrupted"


class VersionConflict(DrawStateError):
    """`expect_version` did not match: another process saved first."""

    code = "version_conflict"


class StaleState(DrawStateError):
    """The save would move progress backwards or rewrite draws already recorded."""

    code = "stale_state"


class OperationClosed(DrawStateError):
    """The operation was rolled back or completed; it can never be saved again."""

    code = "operation_closed"


class NotFound(DrawStateError):
    """Reserved: no op answers it today (a missing state is `None`, not an error)."""

    code = "not_found"


class RedisUnavailable(DrawStateError):
    code = "redis_unavailable"
    retryable = True


class DeadlineExceeded(DrawStateError):
    code = "deadline_exceeded"
    retryable = True


class Overloaded(DrawStateError):
    code = "overloaded"
    retryable = True


class DurabilityNotMet(DrawStateError):
    code = "durability_not_met"
    retryable = True


class OutcomeUnknown(DrawStateError):
    """Whether the request took effect is not known: resend it as it was (same token) to find out.

    `MultiDraw.record` raises it when a save may have been applied and resending it did not
    tell within the deadline; the daemon answers it when a rollback was applied but who pays its
    refund could not be confirmed in time. Until a resend answers, the draw or the refund is in
    doubt: do not grant, do not refund (see docs/recovery.md).
    """

    code = "outcome_unknown"
    retryable = True


class BaseUnknown(DrawStateError):
    """A save sent only the draws it appends, but the daemon does not hold the state they extend.

    Send the whole state instead. Client and AsyncClient do so themselves within the same call
    (protocol.md §7.2); only a client that builds such saves itself sees this error.
    """

    code = "base_unknown"


class FrameTooLarge(DrawStateError):
    code = "frame_too_large"


class InternalError(DrawStateError):
    code = "internal"


class SidecarUnavailable(DrawStateError):
    """The daemon could not be reached (client side only): no socket, or refused; nothing was sent."""

    code = "sidecar_unavailable"
    retryable = True


class SidecarTimeout(SidecarUnavailable):
    """The request went out but no reply came in time, or the connection broke before it (client side only).

    Unlike its base class, the request may have taken effect: resend it unchanged (same token).
    """

    code = "sidecar_timeout"


ERROR_CLASSES: dict[str, type[DrawStateError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        DrawStateCorrupted,
        VersionConflict,
        StaleState,
        OperationClosed,
        NotFound,
        RedisUnavailable,
        DeadlineExceeded,
        Overloaded,
        DurabilityNotMet,
        OutcomeUnknown,
        BaseUnknown,
        FrameTooLarge,
        InternalError,
        SidecarUnavailable,
        SidecarTimeout,
    )
}

#: Wire code → retryable: the one table, which the daemon answers from and clients branch on.
RETRYABLE: dict[str, bool] = {code: cls.retryable for code, cls in ERROR_CLASSES.items()}
#: Codes the Python client makes itself; they never travel on the wire.
CLIENT_ONLY_CODES = frozenset({SidecarUnavailable.code, SidecarTimeout.code})


def error_from_wire(error: dict[str, Any]) -> DrawStateError:
    """Build the typed exception for an error map from a reply."""
    code = str(error.get("code", "internal"))
    message = str(error.get("message", ""))
    details = {k: v for k, v in error.items() if k not in ("code", "message", "retryable")}
    cls = ERROR_CLASSES.get(code)
    if cls is DrawStateCorrupted and details.get("source") == "request":
        cls = InvalidDrawState  # the caller's own state, not stored data
    if cls is None:
        exc = DrawStateError(message or code, details=details)
        exc.code = code  # type: ignore[misc]  # an unknown future code keeps its name
        exc.retryable = bool(error.get("retryable", False))  # type: ignore[misc]
        return exc
    return cls(message, details=details)
