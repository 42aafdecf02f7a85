"""drawstate: keep multi-draw (10-pull) progress safe through a local sidecar daemon.

A game process drives each multi-draw through `MultiDraw` (start, record every
draw, complete); after a crash a new process resumes it, or rolls it back and
refunds from the `Refund` it returns. `Client` is the plain blocking client below it.
"""

from drawstate.client import Client
from drawstate.errors import (
    DeadlineExceeded,
    DrawStateCorrupted,
    DrawStateError,
    DurabilityNotMet,
    FrameTooLarge,
    InternalError,
    InvalidRequest,
    NotFound,
    OperationClosed,
    OutcomeUnknown,
    Overloaded,
    RedisUnavailable,
    SidecarTimeout,
    SidecarUnavailable,
    StaleState,
    VersionConflict,
)
from drawstate.limits import DEFAULT_LIMITS, Limits
from drawstate.model import DrawError, DrawState, InvalidState, Prize, new_operation_id
from drawstate.multidraw import MultiDraw
from drawstate.refund import Refund
from drawstate.results import AuditPage, OutcomeEvent, PendingItem, PendingPage, RollbackResult, SaveResult

__all__ = [
    "DEFAULT_LIMITS",
    "AuditPage",
    "Client",
    "DeadlineExceeded",
    "DrawError",
    "DrawState",
    "DrawStateCorrupted",
    "DrawStateError",
    "DurabilityNotMet",
    "FrameTooLarge",
    "InternalError",
    "InvalidRequest",
    "InvalidState",
    "Limits",
    "MultiDraw",
    "NotFound",
    "OperationClosed",
    "OutcomeEvent",
    "OutcomeUnknown",
    "Overloaded",
    "PendingItem",
    "PendingPage",
    "Prize",
    "RedisUnavailable",
    "Refund",
    "RollbackResult",
    "SaveResult",
    "SidecarTimeout",
    "SidecarUnavailable",
    "StaleState",
    "VersionConflict",
    "new_operation_id",
]
