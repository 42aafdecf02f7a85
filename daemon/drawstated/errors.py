"""Daemon-side failures and the one place they become wire error codes."""

from __future__ import annotations

from typing import Any, Literal

from drawstate import protocol
from drawstate.errors import RETRYABLE


class RequestError(Exception):
    """A request failed in a way the client is told about; `code` is the wire code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def retryable(self) -> bool:
        return RETRYABLE[self.code]

    def to_wire(self) -> dict[str, Any]:
        error = {"code": self.code, "message": self.message, "retryable": RETRYABLE[self.code]}
        error.update(self.details)
        return error


def invalid(message: str) -> RequestError:
    return RequestError(protocol.INVALID_REQUEST, message)


def corrupted(message: str, *, source: Literal["request", "stored"]) -> RequestError:
    """draw_state_corrupted; `source` says whose state broke the rule: the caller's, or Redis's."""
    return RequestError(protocol.DRAW_STATE_CORRUPTED, message, source=source)


def unavailable(message: str) -> RequestError:
    return RequestError(protocol.REDIS_UNAVAILABLE, message)


def deadline(message: str = "the request's deadline passed before Redis answered") -> RequestError:
    return RequestError(protocol.DEADLINE_EXCEEDED, message)


def internal(exc: BaseException) -> RequestError:
    # The message names the type only: exception text may carry a URL or a key value.
    return RequestError(protocol.INTERNAL, f"internal error ({type(exc).__name__}); see daemon log")


def error_reply(request_id: object, error: RequestError) -> dict[str, Any]:
    return {"id": request_id, "ok": False, "error": error.to_wire()}
