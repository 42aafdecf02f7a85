"""drawstated.journal: framed records, torn tails dropped, whole records kept, failed appends undone.

The failing appends run in a child process under a real file size limit (RLIMIT_FSIZE), the
same refusal a full disk gives: the kernel takes part of the write, then answers EFBIG.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from drawstated import journal


def _record(n: int, reason: str = "crash refund") -> dict[str, object]:
    return {
        "lock_key": f"player:{n}",
        "operation_id": f"op-{n}",
        "reason": reason,
        "deferred_at": 1.5,
        "token": f"t{n}",
    }


def test_a_record_is_one_readable_line_with_its_length_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal.append(path, _record(1, reason="line\nbreak"))
    line = path.read_bytes()
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    magic, length, checksum, payload = line[:-1].split(b" ", 3)
    assert (magic, int(length)) == (b"DSJ1", len(payload))
    assert len(checksum) == 8
    assert orjson.loads(payload) == _record(1, reason="line\nbreak")


def test_a_torn_tail_is_dropped_and_every_whole_record_kept(tmp_path: Path) -> None:
    path = tmp_path / "j"
    for n in range(3):
        journal.append(path, _record(n))
    whole = path.read_bytes()
    path.write_bytes(whole + journal.frame(_record(3))[:25])  # a crash mid-append
    found = journal.read(path)
    print(f"torn tail: kept {found.kept}, dropped {found.dropped}")
    assert [r["operation_id"] for r in found.records] == ["op-0", "op-1", "op-2"]
    assert (found.dropped, found.torn_tail) == (1, True)


def test_a_record_failing_its_checksum_is_dropped_and_the_next_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "j"
    damaged = journal.frame(_record(1)).replace(b"player:1", b"player:7")  # same length, other bytes
    path.write_bytes(journal.frame(_record(0)) + damaged + journal.frame(_record(2)))
    found = journal.read(path)
    assert [r["operation_id"] for r in found.records] == ["op-0", "op-2"]
    assert (found.dropped, found.torn_tail) == (1, False)


def test_journals_of_the_old_json_lines_format_still_read(tmp_path: Path) -> None:
    path = tmp_path / "j"
    old = b"".join(orjson.dumps(_record(n)) + b"\n" for n in range(2))
    path.write_bytes(old + journal.frame(_record(2)))
    found = journal.read(path)
    assert [r["operation_id"] for r in found.records] == ["op-0", "op-1", "op-2"]
    assert (found.legacy, found.dropped) == (2, 0)


def test_an_old_format_record_glued_onto_a_partial_line_is_recovered(tmp_path: Path) -> None:
    """What the earlier journal left after a failed append: the next record on the same line."""
    path = tmp_path / "j"
    partial = orjson.dumps(_record(0))[:30]
    path.write_bytes(partial + orjson.dumps(_record(1)) + b"\n")
    found = journal.read(path)
    assert [r["operation_id"] for r in found.records] == ["op-1"]


def test_an_append_after_an_uncut_partial_record_starts_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(journal.frame(_record(0)) + journal.frame(_record(1))[:20])
    journal.append(path, _record(2))
    found = journal.read(path)
    assert [r["operation_id"] for r in found.records] == ["op-0", "op-2"]
    assert found.dropped == 1 and not found.torn_tail


_FILL_UNDER_LIMIT = """
import resource, sys
from pathlib import Path
from drawstated import journal
path, limit = Path(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
ok = failed = 0
for n in range(int(sys.argv[3])):
    record = {"lock_key": f"player:{n}", "operation_id": f"op-{n}", "reason": "r" * 40,
              "deferred_at": 1.0, "token": f"t{n}"}
    try:
        journal.append(path, record)
        ok += 1
    except OSError as exc:
        failed += 1
        error = exc.errno
print(ok, failed, error)
"""


def test_an_append_refused_by_a_full_disk_raises_and_leaves_no_partial_record(tmp_path: Path) -> None:
    path = tmp_path / "j"
    record_bytes = len(journal.frame(_record(0, reason="r" * 40)))
    limit = 3 * record_bytes + record_bytes // 2  # room for three records and half of a fourth
    script = textwrap.dedent(_FILL_UNDER_LIMIT)
    run = subprocess.run(
        [sys.executable, "-c", script, str(path), str(limit), "6"],
        capture_output=True,
        text=True,
        check=True,
    )
    ok, failed, errno_ = (int(x) for x in run.stdout.split())
    assert (ok, failed) == (3, 3), run.stdout
    assert errno_ == 27  # EFBIG: the kernel took half a record, then refused the rest
    assert path.stat().st_size == 3 * record_bytes  # the half record was cut back off
    found = journal.read(path)
    print(f"full disk: kept {found.kept}, dropped {found.dropped}")
    assert (found.kept, found.dropped) == (3, 0)


def test_the_journal_is_private_and_an_old_world_readable_one_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal.append(path, _record(0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)  # how earlier versions created it
    journal.append(path, _record(1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_journal_is_never_opened_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    path = tmp_path / "j"
    path.symlink_to(target)
    with pytest.raises(OSError):
        journal.append(path, _record(0))
    assert target.read_bytes() == b""


def test_a_rewrite_replaces_the_journal_and_an_empty_one_needs_no_free_space(tmp_path: Path) -> None:
    path = tmp_path / "j"
    for n in range(3):
        journal.append(path, _record(n))
    journal.rewrite(path, [_record(1)])
    assert [r["operation_id"] for r in journal.read(path).records] == ["op-1"]
    assert not (tmp_path / "j.tmp").exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    inode = path.stat().st_ino
    journal.rewrite(path, [])
    assert path.read_bytes() == b"" and path.stat().st_ino == inode  # truncated in place
