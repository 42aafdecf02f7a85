"""drawstate: keep multi-draw (10-pull) progress safe through a local sidecar daemon.

A game process saves its DrawState after every draw through `Client`; after a
crash it loads the state and resumes, or rolls the operation back and refunds.
"""

from drawstate.client import Client, PendingItem, PendingPage, RollbackResult, SaveResult
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
    Overloaded,
    RedisUnavailable,
    SidecarUnavailable,
    StaleState,
    VersionConflict,
)
from drawstate.limits import DEFAULT_LIMITS, Limits
from drawstate.model import DrawError, DrawState, InvalidState, Prize, new_operation_id

__all__ = [
    "DEFAULT_LIMITS",
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
    "NotFound",
    "OperationClosed",
    "Overloaded",
    "PendingItem",
    "PendingPage",
    "Prize",
    "RedisUnavailable",
    "RollbackResult",
    "SaveResult",
    "SidecarUnavailable",
    "StaleState",
    "VersionConflict",
    "new_operation_id",
]
