"""Redis key names: made and parsed here only.

`{prefix}:state:{<lock_key>}:<operation_id>` — the braces are a Redis Cluster
hash tag, so a lock key's state, index, tombstones and outbox markers share one
slot and every operation is one atomic script. Only the outcome stream
(`{prefix}:audit`) and the sweeper's lease live outside any lock key's slot.
A lock key never holds a brace, so the first `}` after the tag opens ends it,
whatever colons the lock key holds.
"""

from __future__ import annotations

import re

PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_prefix(prefix: str) -> str:
    """A prefix is 1..64 of [A-Za-z0-9_.:-]: no hash-tag braces, nothing SCAN's glob would read."""
    if not PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"invalid key prefix {prefix!r}: use 1-64 of A-Z a-z 0-9 _ . : -")
    return prefix


def state_key_base(prefix: str, lock_key: str) -> str:
    """The state key of `lock_key` without its operation id: every state key of one lock key starts so."""
    return f"{prefix}:state:{{{lock_key}}}:"


def state_key(prefix: str, lock_key: str, operation_id: str) -> str:
    return state_key_base(prefix, lock_key) + operation_id


def index_key(prefix: str, lock_key: str) -> str:
    return f"{prefix}:ops:{{{lock_key}}}"


def closed_key(prefix: str, lock_key: str, operation_id: str) -> str:
    return f"{prefix}:closed:{{{lock_key}}}:{operation_id}"


def outbox_key(prefix: str, lock_key: str, operation_id: str) -> str:
    """The marker of an ended operation whose outcome event is not in the stream yet."""
    return f"{prefix}:outbox:{{{lock_key}}}:{operation_id}"


def operation_keys(prefix: str, lock_key: str, operation_id: str) -> list[str]:
    """state, index, tombstone, outbox marker: the keys every per-operation script takes, in order."""
    return [
        state_key(prefix, lock_key, operation_id),
        index_key(prefix, lock_key),
        closed_key(prefix, lock_key, operation_id),
        outbox_key(prefix, lock_key, operation_id),
    ]


def audit_key(prefix: str) -> str:
    """The outcome stream: every operation's end, read by `outcomes` consumers and by `audit`."""
    return f"{prefix}:audit"


def sweeper_key(prefix: str) -> str:
    """The lease that lets one daemon of those sharing a Redis sweep at a time."""
    return f"{prefix}:sweeper"


def state_scan_pattern(prefix: str) -> str:
    """SCAN MATCH pattern for every state key under `prefix` (the prefix holds no glob chars)."""
    return f"{prefix}:state:{{*"


def outbox_scan_pattern(prefix: str) -> str:
    """SCAN MATCH pattern for every outbox marker under `prefix`."""
    return f"{prefix}:outbox:{{*"


def parse_state_key(prefix: str, key: str) -> tuple[str, str]:
    """(lock_key, operation_id) of a state key; ValueError if it is not one."""
    return _parse(prefix, "state", key)


def parse_outbox_key(prefix: str, key: str) -> tuple[str, str]:
    """(lock_key, operation_id) of an outbox marker; ValueError if it is not one."""
    return _parse(prefix, "outbox", key)


def _parse(prefix: str, kind: str, key: str) -> tuple[str, str]:
    head = f"{prefix}:{kind}:{{"
    if not key.startswith(head):
        raise ValueError(f"not a {kind} key under {prefix!r}: {key!r}")
    rest = key[len(head) :]
    end = rest.find("}")
    if end <= 0 or rest[end : end + 2] != "}:" or end + 2 == len(rest):
        raise ValueError(f"malformed {kind} key: {key!r}")
    return rest[:end], rest[end + 2 :]
