"""The journal of deferred rollbacks on a really full filesystem, with Redis down.

The daemon is a `python -m drawstated` child. "Full" is real: a file size limit set on the
running process (`prlimit --fsize`, the kernel answers EFBIG past it, after taking what fits),
or a 64 KiB tmpfs filled to the last block (ENOSPC), where this machine lets root mount one.
The daemon's log goes through a pipe, which no file size limit touches, so every line is kept.

What must hold: a rollback the journal cannot take is answered retryable (`redis_unavailable`)
and hides nothing; once there is room, the resend is deferred and journaled; every whole record
survives a torn tail and is replayed after a restart; shutdown completes on a full disk.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drawstate import Client, DrawState, DrawStateError, new_operation_id
from drawstated import journal
from drawstated.deferred import JOURNAL_NAME
from testbed.redis_proc import RedisProcess
from tests.support.daemon import DaemonProcess
from tests.support.waiting import wait_until

#: Size of the tmpfs that the second test fills.
TMPFS_SIZE = "64k"


class PipedDaemon(DaemonProcess):
    """A DaemonProcess whose log reaches its file through a pipe, so a file size limit on the
    daemon never costs a log line; `prefix` runs before the interpreter (e.g. prlimit)."""

    def __init__(self, socket_path: Path, args: list[str], prefix: tuple[str, ...] = ()) -> None:
        super().__init__(socket_path, args)
        self.prefix = prefix
        self._copier: threading.Thread | None = None

    def start(self, *, wait: bool = True) -> PipedDaemon:
        command = [*self.prefix, sys.executable, "-m", "drawstated", "--socket", str(self.socket_path)]
        self.proc = subprocess.Popen(
            [*command, *self.args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self.env
        )
        self._copier = threading.Thread(target=self._copy_log, daemon=True)
        self._copier.start()
        if wait:
            self.wait_ready()
        return self

    def _copy_log(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout as pipe, open(self.log_path, "ab", buffering=0) as log:
            for line in pipe:
                log.write(line)

    def limit_file_size(self, limit: int | None) -> None:
        assert self.proc is not None
        value = (
            "unlimited:" if limit is None else f"{limit}:"
        )  # the soft limit: raising a hard one needs CAP_SYS_RESOURCE
        subprocess.run(["prlimit", "--pid", str(self.proc.pid), f"--fsize={value}"], check=True)

    def wait(self, timeout: float = 30) -> int:
        code = super().wait(timeout)
        self._join_copier()
        return code

    def stop(self) -> None:
        super().stop()
        self._join_copier()

    def _join_copier(self) -> None:
        if self._copier is not None:
            self._copier.join(5)


@pytest.fixture
def durable_redis() -> Iterator[RedisProcess]:
    proc = RedisProcess(appendonly=True).start()
    yield proc
    proc.cleanup()


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dsj-", dir="/tmp"))
    yield path
    for daemon in _STARTED.pop(path, []):
        daemon.stop()  # whatever the test did, no daemon outlives it
    shutil.rmtree(path, ignore_errors=True)


_STARTED: dict[Path, list[PipedDaemon]] = {}


def _state(n: int) -> DrawState:
    now = int(time.time())
    return DrawState(
        lock_key=f"player:{n}",
        operation_id=new_operation_id(),
        total_count=10,
        start_time=now,
        last_update_time=now,
        metadata={"user_id": str(n)},
    )


def _spawn(home: Path, redis: RedisProcess, data_dir: Path, prefix: tuple[str, ...] = ()) -> PipedDaemon:
    args = ["--redis-url", redis.url, "--data-dir", str(data_dir), "--cleanup-retry", "0.05"]
    daemon = PipedDaemon(home / "d.sock", args, prefix)
    _STARTED.setdefault(home, []).append(daemon)
    return daemon.start()


def _record_of(state: DrawState, token: str) -> bytes:
    fields = {"lock_key": state.lock_key, "operation_id": state.operation_id, "reason": ""}
    return journal.frame({**fields, "deferred_at": time.time(), "token": token})


def _deferred_count(client: Client) -> int:
    return int(client.stats().deferred_rollbacks)


def _operations(path: Path) -> list[str]:
    return [record["operation_id"] for record in journal.read(path).records]


def _state_key(state: DrawState) -> str:
    return f"lottery:state:{{{state.lock_key}}}:{state.operation_id}"


def test_a_rollback_the_full_disk_refuses_is_retryable_hides_nothing_and_is_journaled_once_there_is_room(
    home, durable_redis, chaos_report
):
    data_dir = home / "data"
    daemon = _spawn(home, durable_redis, data_dir)
    path = data_dir / JOURNAL_NAME
    first, second = _state(1), _state(2)
    with Client(daemon.socket_path, timeout=2.0) as client:
        client.save(first)
        client.save(second)
        durable_redis.kill()
        assert client.rollback(first, token="tok-first").cleanup == "deferred"  # room: journaled
        whole = path.stat().st_size
        record = len(_record_of(second, "tok-second"))
        daemon.limit_file_size(whole + record // 2)  # room for half of the next record
        with pytest.raises(DrawStateError) as refused:
            client.rollback(second, token="tok-second")
        assert (refused.value.code, refused.value.retryable) == ("redis_unavailable", True)
        # Nothing hidden: the operation is not pending here, and another caller is not told
        # "rolled back again" (which it would be, had the rollback been taken).
        assert _deferred_count(client) == 1
        with pytest.raises(DrawStateError) as other:
            client.rollback(second, token="tok-other")
        assert other.value.code == "redis_unavailable"
        # No partial record: the half that fitted was cut back off.
        assert path.stat().st_size == whole
        full = journal.read(path)
        assert (full.kept, full.dropped) == (1, 0)

        daemon.limit_file_size(None)  # space returns; Redis is still down
        again = client.rollback(second, token="tok-second")
        assert (again.cleanup, again.final) == ("deferred", False)
        assert _deferred_count(client) == 2
    after = journal.read(path)
    assert _operations(path) == [first.operation_id, second.operation_id]
    assert after.dropped == 0
    daemon.stop()
    assert "Traceback" not in daemon.log()

    # A crash mid-append: a torn record after the whole ones. The next start replays the whole ones.
    torn = journal.frame({"lock_key": "player:9", "operation_id": "op-torn", "reason": "",
                          "deferred_at": 1.0, "token": "t"})[:40]  # fmt: skip
    with open(path, "ab") as handle:
        handle.write(torn)
    durable_redis.start()
    restarted = _spawn(home, durable_redis, data_dir)
    with durable_redis.client() as rdb:
        wait_until(lambda: not rdb.exists(_state_key(first)) and not rdb.exists(_state_key(second)))
    with Client(restarted.socket_path, timeout=2.0) as client:
        wait_until(lambda: _deferred_count(client) == 0)
        assert client.load(second.lock_key, second.operation_id) is None
    assert "kept=2 dropped=1 torn_tail=True" in restarted.log()
    wait_until(lambda: path.read_bytes() == b"")  # all applied: the journal is cleared
    restarted.stop()
    chaos_report["journal: full disk (prlimit --fsize)"] = (
        f"rollback on a full disk: redis_unavailable, 0 hidden, journal kept {full.kept} whole "
        f"record(s), {full.dropped} partial; after space returned: {after.kept} kept, {after.dropped} "
        f"dropped; restart with a torn tail: kept 2, dropped 1, both rollbacks applied"
    )


def _stranded_behind_a_torn_journal(
    home: Path, durable_redis: RedisProcess, index: int
) -> tuple[Path, Path, DrawState]:
    """A saved operation whose rollback the journal holds, then a torn tail (a rewrite is due); Redis down."""
    data_dir = home / "data"
    data_dir.mkdir(mode=0o700)
    path = data_dir / JOURNAL_NAME
    stranded = _state(index)
    first = _spawn(home, durable_redis, data_dir)
    with Client(first.socket_path, timeout=2.0) as client:
        client.save(stranded)
    first.stop()
    journal.append(path, {"lock_key": stranded.lock_key, "operation_id": stranded.operation_id,
                          "reason": "", "deferred_at": 1.0, "token": "tok"})  # fmt: skip
    with open(path, "ab") as handle:
        handle.write(b"DSJ1 99 0000")
    durable_redis.kill()
    return data_dir, path, stranded


def test_shutdown_completes_and_removes_the_socket_when_the_journal_cannot_be_rewritten(
    home, durable_redis, chaos_report
):
    """A damaged journal is rewritten clean at start: with no room at all that fails at start, in
    the background task (which keeps going) and at shutdown; none of it stops the daemon."""
    data_dir, path, _ = _stranded_behind_a_torn_journal(home, durable_redis, 3)
    before = path.read_bytes()

    daemon = _spawn(home, durable_redis, data_dir, prefix=("prlimit", "--fsize=0:"))
    wait_until(lambda: "deferred cleanup failed; retrying" in daemon.log())
    with Client(daemon.socket_path, timeout=2.0) as client:
        assert _deferred_count(client) == 1  # replayed, still hidden
        assert client.ping().redis == "down"
    daemon.terminate()
    assert daemon.wait() == 0
    assert not daemon.socket_path.exists()
    log = daemon.log()
    assert "not rewritten at start-up" in log and "not rewritten at shutdown" in log
    assert "stopped" in log
    assert path.read_bytes() == before  # never half-rewritten
    chaos_report["journal: shutdown on a full disk"] = (
        "rewrite refused at start-up, in the background task and at shutdown; exit 0, socket removed"
    )


def _mount_tmpfs(directory: Path) -> bool:
    directory.mkdir(mode=0o700)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        check=False,
    )
    return mounted.returncode == 0


def _fill(directory: Path) -> Path:
    """Write a filler file until the filesystem refuses another byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 512)
        except OSError:
            pass
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass
    return filler


def test_on_a_full_tmpfs_a_rollback_is_refused_retryable_then_journaled_once_space_returns(
    home, durable_redis, chaos_report
):
    data_dir = home / "data"
    if not _mount_tmpfs(data_dir):
        pytest.skip("this machine does not let the tests mount a tmpfs")
    try:
        daemon = _spawn(home, durable_redis, data_dir)
        state = _state(4)
        with Client(daemon.socket_path, timeout=2.0) as client:
            client.save(state)
            durable_redis.kill()
            filler = _fill(data_dir)
            with pytest.raises(DrawStateError) as refused:
                client.rollback(state, token="tok-tmpfs")
            assert (refused.value.code, refused.value.retryable) == ("redis_unavailable", True)
            assert _deferred_count(client) == 0
            path = data_dir / JOURNAL_NAME
            full = journal.read(path)
            assert full.kept == 0 and full.dropped == 0 and (not path.exists() or path.stat().st_size == 0)
            filler.unlink()
            assert client.rollback(state, token="tok-tmpfs").cleanup == "deferred"
            assert _operations(path) == [state.operation_id]
        daemon.stop()
    finally:
        subprocess.run(["umount", str(data_dir)], check=False)
    chaos_report["journal: full tmpfs"] = (
        f"{TMPFS_SIZE} tmpfs filled: rollback redis_unavailable, journal kept {full.kept}, dropped "
        f"{full.dropped}; after freeing space the resend was deferred and journaled"
    )


def test_the_background_task_works_again_once_the_disk_has_room_rewrites_the_journal_and_applies_the_rollback(
    home, durable_redis, chaos_report
):
    """The background rewrite of a damaged journal fails on a full disk and is retried with
    backoff; once there is room it succeeds (the torn tail is gone, the whole record kept), and
    when Redis returns the rollback is applied and the journal cleared."""
    data_dir, path, stranded = _stranded_behind_a_torn_journal(home, durable_redis, 5)
    before = path.read_bytes()

    daemon = _spawn(home, durable_redis, data_dir, prefix=("prlimit", "--fsize=0:"))
    wait_until(lambda: "deferred cleanup failed; retrying" in daemon.log())
    assert "deferred cleanup working again" not in daemon.log()
    assert path.read_bytes() == before  # the disk refused the rewrite: the journal is as it was
    with Client(daemon.socket_path, timeout=2.0) as client:
        assert _deferred_count(client) == 1

        daemon.limit_file_size(None)  # room again; Redis is still down
        wait_until(lambda: "deferred cleanup working again" in daemon.log())
        clean = journal.read(path)
        assert (clean.kept, clean.dropped, clean.torn_tail) == (1, 0, False)  # rewritten clean
        assert _operations(path) == [stranded.operation_id]
        assert _deferred_count(client) == 1  # still pending: Redis has not taken it yet

        durable_redis.start()
        with durable_redis.client() as rdb:
            wait_until(lambda: not rdb.exists(_state_key(stranded)))
        wait_until(lambda: _deferred_count(client) == 0)
        assert client.load(stranded.lock_key, stranded.operation_id) is None
    wait_until(lambda: path.read_bytes() == b"")  # applied: the journal is cleared
    assert "deferred rollback applied" in daemon.log()
    daemon.stop()
    assert "Traceback" not in daemon.log()
    chaos_report["journal: background task after a full disk"] = (
        "rewrite refused with backoff; once the limit was lifted the journal was rewritten clean "
        "(1 kept, torn tail dropped) and, with Redis back, the rollback applied and the journal cleared"
    )
