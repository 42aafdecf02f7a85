"""Redis error replies, typed when they are parsed: what the daemon does with one is its class.

The mapping follows redis-py's `EXCEPTION_CLASSES` and `parse_error`: the reply's first word picks
the class. Unlike redis-py, every class here is a `ResponseError` (redis-py makes LOADING a
`ConnectionError`), the message keeps its code (it is logged as Redis wrote it), and the classes
are grouped by what the daemon does with them:

- `RetryableReply`: Redis (or this node) cannot take writes just now (LOADING, BUSY, OOM,
  READONLY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN); the retry policy tries again until the deadline.
  OOM too: Redis refuses a script's first write, and only its first, so nothing changed.
- `DemotedReply` (READONLY, MASTERDOWN): this server is no longer a writable master; its
  connection takes nothing new and the pool reconnects (asking Sentinel anew).
- `Redirect` (MOVED, ASK): the cluster router follows it; one it gave up following is retryable.
- `NoScriptError`: Redis lost its script cache; the scripts are loaded again.
- `NoGroupError`, `BusyGroupError`: the outcome stream's consumer group is missing, or exists.
"""

from __future__ import annotations

from redis.exceptions import ResponseError


class ReplyError(ResponseError):
    """An error reply; `code` is its first word (ERR, WRONGTYPE, NOSCRIPT, MOVED, ...)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = message.split(" ", 1)[0]


class RetryableReply(ReplyError):
    """Redis cannot take this just now; the same command may succeed once it can."""


class DemotedReply(RetryableReply):
    """This server stopped being a writable master (a failover happened)."""


class LoadingError(RetryableReply):
    """LOADING: Redis is loading its data set."""


class BusyError(RetryableReply):
    """BUSY: a script runs past its time limit."""


class OutOfMemoryError(RetryableReply):
    """OOM: over maxmemory; the script's first write was refused, so nothing changed."""


class ReadOnlyError(DemotedReply):
    """READONLY: a replica now (a failover demoted this master)."""


class MasterDownError(DemotedReply):
    """MASTERDOWN: a replica that lost its master."""


class TryAgainError(RetryableReply):
    """TRYAGAIN: a multi-key command on a slot being migrated."""


class ClusterDownError(RetryableReply):
    """CLUSTERDOWN: the cluster cannot serve this slot now."""


class Redirect(RetryableReply):
    """MOVED or ASK: another node serves this slot; `slot` and `target` ("host:port") say which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _, slot, self.target = message.split(" ", 2)
        self.slot = int(slot)


class MovedError(Redirect):
    """MOVED: the slot lives on `target` now."""


class AskError(Redirect):
    """ASK: the slot is migrating; ask `target` this once (after ASKING)."""


class NoScriptError(ReplyError):
    """NOSCRIPT: Redis lost its scripts (a restart, SCRIPT FLUSH)."""


class NoGroupError(ReplyError):
    """NOGROUP: the consumer group (or its stream) does not exist."""


class BusyGroupError(ReplyError):
    """BUSYGROUP: the consumer group exists already."""


EXCEPTION_CLASSES: dict[str, type[ReplyError]] = {
    "LOADING": LoadingError,
    "BUSY": BusyError,
    "OOM": OutOfMemoryError,
    "READONLY": ReadOnlyError,
    "MASTERDOWN": MasterDownError,
    "TRYAGAIN": TryAgainError,
    "CLUSTERDOWN": ClusterDownError,
    "MOVED": MovedError,
    "ASK": AskError,
    "NOSCRIPT": NoScriptError,
    "NOGROUP": NoGroupError,
    "BUSYGROUP": BusyGroupError,
}


def parse_error(message: str) -> ReplyError:
    """The typed error for one error reply (hiredis calls this for each, nested ones too)."""
    kind = EXCEPTION_CLASSES.get(message.split(" ", 1)[0], ReplyError)
    try:
        return kind(message)
    except ValueError:  # a redirect that does not say where: an answer to report, not follow
        return ReplyError(message)
