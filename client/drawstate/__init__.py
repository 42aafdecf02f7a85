"""drawstate: keep multi-draw (10-pull) progress safe through a local sidecar daemon.

A game process drives each multi-draw through `MultiDraw` (start, record every
draw, complete); after a crash a new process resumes it, or rolls it back and
refunds from the `Refund` it returns when it is final (else a refund worker pays
it from the outcome stream: `Client.iter_outcomes`). `Client` is the blocking
client below it, safe to share between threads; `drawstate.aio` has the same for
asyncio. The one dependency is msgpack.
"""

__version__ = "0.1.0"

# First of all (isort keeps it first): the import hook that picks each hot-path module's compiled or
# pure-Python build (hotpath.py), in place before any of those modules is imported.
from drawstate import hotpath
from drawstate.client import Client
from drawstate.errors import (
    DeadlineExceeded,
    DrawStateCorrupted,
    DrawStateError,
    DurabilityNotMet,
    FrameTooLarge,
    InternalError,
    InvalidDrawState,
    InvalidRequest,
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
from drawstate.resend import Retry
from drawstate.results import (
    AuditPage,
    Cleanup,
    Durability,
    OutcomeEvent,
    PendingItem,
    PendingPage,
    Ping,
    RollbackResult,
    SaveResult,
    Stats,
)

hot_path = hotpath.hot_path

__all__ = [
    "DEFAULT_LIMITS",
    "AuditPage",
    "Cleanup",
    "Client",
    "DeadlineExceeded",
    "DrawError",
    "DrawState",
    "DrawStateCorrupted",
    "DrawStateError",
    "Durability",
    "DurabilityNotMet",
    "FrameTooLarge",
    "InternalError",
    "InvalidDrawState",
    "InvalidRequest",
    "InvalidState",
    "Limits",
    "MultiDraw",
    "OperationClosed",
    "OutcomeEvent",
    "OutcomeUnknown",
    "Overloaded",
    "PendingItem",
    "PendingPage",
    "Ping",
    "Prize",
    "RedisUnavailable",
    "Refund",
    "Retry",
    "RollbackResult",
    "SaveResult",
    "SidecarTimeout",
    "SidecarUnavailable",
    "StaleState",
    "Stats",
    "VersionConflict",
    "__version__",
    "hot_path",
    "new_operation_id",
]
