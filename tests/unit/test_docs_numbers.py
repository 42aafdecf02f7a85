"""The numbers in the prose of the docs (operations, limits, benchmarks) are the code's and the unit's.

Their tables and memory paragraphs are generated (drawstated.reference); what the prose states
besides (the start-up wait, file modes, the unit's memory cap, the descriptor reserve) is read out
here and compared with the constant or the unit file that governs it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from drawstate import appends
from drawstate.limits import MIB
from drawstated import config, journal
from drawstated.reference.limits import rss_bound_bytes
from drawstated.server import locks, process

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "drawstated.service"


def _unit_memory_max() -> int:
    match = re.search(r"^MemoryMax=(\d+)M$", UNIT.read_text(), re.MULTILINE)
    assert match, "the unit lost its MemoryMax"
    return int(match[1]) * MIB


def _mode(value: int) -> str:
    return f"{value:04o}"


STATED = [
    ("docs/operations.md", r"after (\d+) s of trying", str(int(process.STARTUP_REDIS_WAIT_S))),
    ("docs/operations.md", r"The socket is created (0\d{3})", _mode(config.SOCKET_MODE)),
    ("docs/operations.md", r"reach the (0\d{3}) socket", _mode(config.SOCKET_MODE)),
    ("docs/operations.md", r"runs with umask (0\d{3})", _mode(locks.PRIVATE_UMASK)),
    ("docs/operations.md", r"creates its data dir (0\d{3})", _mode(locks.PRIVATE_DIR_MODE)),
    ("docs/operations.md", r"the lock files are (0\d{3})", _mode(locks.PRIVATE_FILE_MODE)),
    ("docs/operations.md", r"lock file\) is (0\d{3})", _mode(journal.JOURNAL_MODE)),
    ("docs/operations.md", r"`MemoryMax=(\d+)M`", str(_unit_memory_max() // MIB)),
    ("docs/limits.md", r"`FD_RESERVE` \((\d+),", str(process.FD_RESERVE)),
    ("docs/limits.md", r"unit's `MemoryMax=(\d+)M`", str(_unit_memory_max() // MIB)),
    ("docs/benchmarks.md", r"`MIN_ITEMS_TO_APPEND` \((\d+)\)", str(appends.MIN_ITEMS_TO_APPEND)),
    ("docs/benchmarks.md", r"`--accepted-cache-bytes`,\s+(\d+) MiB", str(config.ACCEPTED_CACHE_BYTES // MIB)),
]


@pytest.mark.parametrize(("doc", "pattern", "code"), STATED, ids=[f"{d}: {p}" for d, p, _ in STATED])
def test_a_number_in_the_prose_is_the_code_s(doc: str, pattern: str, code: str) -> None:
    found = re.findall(pattern, (ROOT / doc).read_text())
    assert found, f"{doc} no longer says /{pattern}/: update the pattern with the sentence"
    assert set(found) == {code}, f"{doc} says {found}, the code says {code}"


def test_the_stated_memory_bound_sits_well_under_the_unit_s_memory_max() -> None:
    bound = rss_bound_bytes(config.MAX_INFLIGHT_BYTES, config.MAX_CONNECTIONS)
    assert bound < 0.7 * _unit_memory_max()
