"""The Lua scripts: read once from lua/, shared code included, each run by EVALSHA under its SHA.

A script may pull in a library with a line `--- @include <name>` (bullmq's habit): the line is
replaced by lua/<name>.lua before the SHA is taken, so Redis sees one self-contained script and
the SHA names exactly what runs. Each Script builds its own EVALSHA, so the key count always
matches the keys given.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

#: Every script the daemon runs (libraries, only included, are not listed).
SCRIPT_NAMES = ("save", "close", "settle", "outbox", "published", "expire", "trim", "prune", "newest", "page")
_INCLUDE_RE = re.compile(r"^--- @include (\w+)$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files("drawstated").joinpath(f"redis/lua/{name}.lua").read_text()


def expand(source: str) -> str:
    """`source` with each `--- @include <name>` line replaced by that library (one level deep)."""
    return _INCLUDE_RE.sub(lambda match: _read(match[1]), source)


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    #: SHA1 of the expanded source, as Redis names scripts: EVALSHA works at once when Redis has it.
    sha: str

    @classmethod
    def load(cls, name: str) -> Script:
        source = expand(_read(name))
        return cls(name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> tuple[Any, ...]:
        """The EVALSHA command for these keys and arguments."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


def load_all() -> dict[str, Script]:
    return {name: Script.load(name) for name in SCRIPT_NAMES}
