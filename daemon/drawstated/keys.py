"""Redis key names: made and parsed here only.

`{prefix}:state:{<lock_key>}:<operation_id>` — the braces are a Redis Cluster
hash tag, so a lock key's state, index and tombstones share one slot and every
operation is one atomic script. A lock key never holds a brace, so the first
`}` after the tag opens ends it, whatever colons the lock key holds.
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


def audit_key(prefix: str) -> str:
    return f"{prefix}:audit"


def state_scan_pattern(prefix: str) -> str:
    """SCAN MATCH pattern for every state key under `prefix` (the prefix holds no glob chars)."""
    return f"{prefix}:state:{{*"


def parse_state_key(prefix: str, key: str) -> tuple[str, str]:
    """(lock_key, operation_id) of a state key; ValueError if it is not one."""
    head = f"{prefix}:state:{{"
    if not key.startswith(head):
        raise ValueError(f"not a state key under {prefix!r}: {key!r}")
    rest = key[len(head) :]
    end = rest.find("}")
    if end <= 0 or rest[end : end + 2] != "}:" or end + 2 == len(rest):
        raise ValueError(f"malformed state key: {key!r}")
    return rest[:end], rest[end + 2 :]
