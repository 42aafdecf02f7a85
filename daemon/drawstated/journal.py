"""The on-disk journal of deferred rollbacks: framed records, appended durably, rewritten atomically.

One record per line, readable with `cat`:

    DSJ1 <payload length> <crc32 of the payload, 8 hex digits> <payload: one JSON object>\\n

orjson never writes a raw newline inside JSON, so a record is exactly one line. A crash or a full
disk mid-append leaves at worst a tail without its newline, or a line whose length or checksum
does not match: `read` drops it (and says so) and keeps every whole record around it. Lines of
the old format (bare JSON objects, one per line, before records were framed) still read.

Writes are durable before they return: an append is fsynced (and its directory too when it made
the file), and a failed append is truncated back to where it began, so it never glues itself onto
the next record. A rewrite goes to a temporary file, fsync, rename over the journal, fsync of the
directory: the journal is always either the old one or the new one. Files are opened without
following symlinks, private to the daemon's user (0600, an older 0644 journal is fixed).
"""

from __future__ import annotations

import os
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

MAGIC = b"DSJ1"
#: The journal holds lock keys and reasons: private to the daemon's user.
JOURNAL_MODE = 0o600
#: A record's header: magic, length and checksum; what comes after it is the payload.
_HEADER_FIELDS = 3
#: Where a record may begin inside a damaged line (a partial write glued onto the next record).
_RECORD_STARTS = (MAGIC + b" ", b'{"lock_key":')
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def frame(record: dict[str, Any]) -> bytes:
    """One record as its journal line."""
    payload = orjson.dumps(record)
    return b"%s %d %08x %s\n" % (MAGIC, len(payload), zlib.crc32(payload), payload)


@dataclass
class JournalRead:
    """What `read` found: the whole records in order, and how many lines it had to drop."""

    records: list[dict[str, Any]] = field(default_factory=list)
    #: Lines dropped: torn, failing their checksum, or not a record at all.
    dropped: int = 0
    #: The file ended in a record cut short (no newline): what a crash mid-append leaves.
    torn_tail: bool = False
    #: Records in the old unframed format (each counted in `records` too).
    legacy: int = 0

    @property
    def kept(self) -> int:
        return len(self.records)


def _parse_framed(line: bytes) -> dict[str, Any] | None:
    parts = line.split(b" ", _HEADER_FIELDS)
    if len(parts) != _HEADER_FIELDS + 1 or parts[0] != MAGIC:
        return None
    _, length, checksum, payload = parts
    try:
        if int(length) != len(payload) or int(checksum, 16) != zlib.crc32(payload):
            return None
        record = orjson.loads(payload)
    except ValueError:  # int() of a damaged header, or JSON that is not (JSONDecodeError)
        return None
    return record if isinstance(record, dict) else None


def _parse_legacy(line: bytes) -> dict[str, Any] | None:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _parse_line(line: bytes) -> tuple[dict[str, Any] | None, bool]:
    """(record, legacy) of one line; a damaged start is skipped to the last record start in it."""
    candidates = [line]
    # A framed line is judged by its checksum alone: JSON inside its payload is never a record.
    starts = _RECORD_STARTS[:1] if MAGIC in line else _RECORD_STARTS[1:]
    for start in starts:
        at = line.rfind(start, 1)
        if at > 0:
            candidates.append(line[at:])
    for candidate in candidates:
        if candidate.startswith(MAGIC):
            record = _parse_framed(candidate)
            if record is not None:
                return record, False
        elif candidate.startswith(b"{"):
            record = _parse_legacy(candidate)
            if record is not None:
                return record, True
    return None, False


def read(path: Path) -> JournalRead:
    """Every whole record of the journal at `path` (none when there is no file)."""
    found = JournalRead()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return found
    *lines, tail = data.split(b"\n")
    if tail.strip():
        found.torn_tail = True
        found.dropped += 1
    for line in lines:
        if not line.strip():
            continue
        record, legacy = _parse_line(line)
        if record is None:
            found.dropped += 1
            continue
        found.records.append(record)
        found.legacy += legacy
    return found


def fsync_dir(directory: Path) -> None:
    """Make a file's creation or rename in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a full disk may take part of it, then refuse)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _private_regular_file(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{path} is not a regular file")
    if stat.S_IMODE(info.st_mode) != JOURNAL_MODE:
        os.fchmod(fd, JOURNAL_MODE)  # journals of earlier versions were created 0644


def _open_for_append(path: Path) -> tuple[int, bool]:
    """(fd, created): the journal opened for appending, made private, created if missing."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | _OPEN_FLAGS)
        created = False
    except FileNotFoundError:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, JOURNAL_MODE)
        created = True
    try:
        _private_regular_file(fd, path)
    except OSError:
        os.close(fd)
        raise
    return fd, created


def append(path: Path, record: dict[str, Any]) -> None:
    """Append one record and make it durable before returning; OSError leaves the file as it was.

    On failure (a full disk, a file size limit, an I/O error) the file is cut back to the size it
    had, so no partial record is left for the next one to be glued onto; and if that cut fails too,
    the next append starts on a new line all the same.
    """
    fd, created = _open_for_append(path)
    try:
        start = os.fstat(fd).st_size
        line = frame(record)
        if start and os.pread(fd, 1, start - 1) != b"\n":
            line = b"\n" + line  # a tail some earlier failure could not cut: never glue onto it
        try:
            _write_all(fd, line)
            os.fsync(fd)
            if created:
                fsync_dir(path.parent)
        except OSError:
            try:
                os.ftruncate(fd, start)
                os.fsync(fd)
            except OSError:
                pass  # the caller logs the first error; the next append starts a fresh line
            raise
    finally:
        os.close(fd)


def rewrite(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Replace the journal with `records`: temp file, fsync, rename, fsync of the directory.

    An empty journal is made by truncating the file in place instead (durable, atomic, and it
    needs no free space, so a full disk can still clear a journal whose rollbacks all went through).
    """
    lines = b"".join(frame(record) for record in records)
    if not lines:
        _truncate(path)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, JOURNAL_MODE)
    try:
        _write_all(fd, lines)
        os.fsync(fd)
    except OSError:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _truncate(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | _OPEN_FLAGS)
    except FileNotFoundError:
        return
    try:
        _private_regular_file(fd, path)
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
