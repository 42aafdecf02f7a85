"""What the benchmark runs against: its own Redis (one server or a Cluster) and daemon, or given ones.

Own standalone (`--topology standalone`, the default): a redis-server
(drawstated.server.embedded.find_redis_server()) on a unix socket in a private temp
dir, persistence off unless asked (both the sidecar and direct runs write to
this one Redis, so it costs them alike), and the daemon as
`python -m drawstated --socket ... --redis-url ... --data-dir ...` with its
defaults (DRAWSTATE_* variables of the caller are not passed on, but for
DRAWSTATE_PURE_PYTHON). Both run in
their own session, so a Ctrl-C on the terminal reaches only the harness, which
stops them in order; both also die with the harness (PR_SET_PDEATHSIG) should
it be killed outright. Their pids are known, so /proc gives their CPU and RSS.

Own cluster (`--topology cluster`): 3 masters + 3 replicas on loopback TCP
(cluster.py), the daemon started with `--redis-cluster <seeds>`; Redis CPU and
RSS are those of the masters, summed, with the replicas' apart.

Given: `--redis-url` and `--socket` of running ones; CPU and RSS are measured
only for the pids given with `--daemon-pid` / `--redis-pid`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from benchmarks.cluster import OwnCluster
from drawstate import Client
from drawstate.hotpath import PURE_PYTHON_ENV
from drawstated.server.embedded import die_with_parent, find_redis_server
from testbed.redis_proc import stop_process

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 20.0


class EnvironmentFailed(RuntimeError):
    """Redis or the daemon could not be started or reached."""


@dataclass(frozen=True)
class Environment:
    socket_path: str
    #: The Redis URL; for a cluster, that of its first seed node (for display only).
    redis_url: str
    prefix: str
    daemon_pid: int | None
    redis_pid: int | None
    owned: bool
    redis_version: str
    topology: str = "standalone"
    cluster: OwnCluster | None = None

    @property
    def cluster_seeds(self) -> tuple[str, ...]:
        return self.cluster.seeds if self.cluster is not None else ()

    @property
    def pids(self) -> dict[str, int | list[int] | None]:
        """Processes measured: "redis" is every master of a cluster (summed); "replicas" its replicas."""
        if self.cluster is not None:
            return {
                "daemon": self.daemon_pid,
                "redis": self.cluster.master_pids(),
                "replicas": self.cluster.replica_pids(),
            }
        return {"daemon": self.daemon_pid, "redis": self.redis_pid}


def _spawn(args: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # no SIGINT from the terminal: the harness stops it
            preexec_fn=die_with_parent,  # noqa: PLW1509  # prctl only; no locks taken
        )


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a benchmark's server or daemon, then SIGKILL if it does not exit in time."""
    stop_process(proc, STOP_TIMEOUT_S)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _wait(check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EnvironmentFailed(f"{what} exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            if check():
                return
        except Exception:  # not up yet: poll again
            pass
        time.sleep(0.02)
    raise EnvironmentFailed(f"{what} did not answer within {START_TIMEOUT_S} s:\n{_tail(log_path)}")


def start_redis(directory: Path, *, aof: bool) -> tuple[subprocess.Popen[bytes], str]:
    sock = directory / "redis.sock"
    args = [
        find_redis_server(),
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes" if aof else "no",
        "--appendfsync", "everysec",
        "--daemonize", "no",
    ]  # fmt: skip
    log_path = directory / "redis.log"
    proc = _spawn(args, log_path)
    url = f"unix://{sock}"

    def ping() -> bool:
        with redis.Redis.from_url(url, socket_timeout=1) as client:
            return bool(client.ping())

    _wait(ping, proc, "redis-server", log_path)
    return proc, url


def start_daemon(
    directory: Path,
    redis_args: list[str],
    *,
    command: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """The daemon with its defaults and `redis_args` (`--redis-url URL` or `--redis-cluster SEEDS`).

    Of the caller's DRAWSTATE_* variables only DRAWSTATE_PURE_PYTHON passes (which build runs, not
    how it is configured); `command` replaces `python -m drawstated` (hotpath_cpu.py's variants).
    """
    sock = directory / "d.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAWSTATE_") or k == PURE_PYTHON_ENV}
    env.update(extra_env or {})
    args = [
        *(command or [sys.executable, "-m", "drawstated"]),
        "--socket", str(sock),
        *redis_args,
        "--data-dir", str(directory / "data"),
    ]  # fmt: skip
    log_path = directory / "daemon.log"
    proc = _spawn(args, log_path, env)

    def ping() -> bool:
        with Client(sock, timeout=1) as client:
            return client.ping().up

    _wait(ping, proc, "drawstated", log_path)
    return proc, str(sock)


def _redis_version(url: str) -> str:
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        return str(client.info("server").get("redis_version", "?"))


def _forget_keys(url: str, tag: str) -> None:
    """Delete what a run against a given Redis wrote (its keys all hold the run's tag)."""
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        batch = []
        for key in client.scan_iter(match=f"*{tag}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                client.unlink(*batch)
                batch.clear()
        if batch:
            client.unlink(*batch)


def _start_cluster(aof: bool) -> OwnCluster:
    try:
        return OwnCluster(aof=aof)
    except (RuntimeError, OSError, subprocess.SubprocessError, redis.RedisError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        raise EnvironmentFailed(f"the Redis Cluster could not be built: {exc} {detail!r}") from exc


@contextlib.contextmanager
def environment(
    *,
    tag: str,
    redis_url: str | None = None,
    socket_path: str | None = None,
    daemon_pid: int | None = None,
    redis_pid: int | None = None,
    prefix: str = "lottery",
    aof: bool = False,
    topology: str = "standalone",
) -> Iterator[Environment]:
    """Start what is not given, yield the endpoints, and stop what was started, whatever happens."""
    directory = Path(tempfile.mkdtemp(prefix="dsb-", dir="/tmp"))  # short: unix socket paths
    redis_proc = daemon_proc = None
    cluster: OwnCluster | None = None
    try:
        if topology == "cluster":
            cluster = _start_cluster(aof)
            redis_url = f"redis://{cluster.seeds[0]}"
            redis_args = ["--redis-cluster", ",".join(cluster.seeds)]
        else:
            if redis_url is None:
                redis_proc, redis_url = start_redis(directory, aof=aof)
                redis_pid = redis_proc.pid
            redis_args = ["--redis-url", redis_url]
        if socket_path is None:
            daemon_proc, socket_path = start_daemon(directory, redis_args)
            daemon_pid = daemon_proc.pid
        yield Environment(
            socket_path=socket_path,
            redis_url=redis_url,
            prefix=prefix,
            daemon_pid=daemon_pid,
            redis_pid=redis_pid,
            owned=redis_proc is not None or cluster is not None,
            redis_version=cluster.version() if cluster is not None else _redis_version(redis_url),
            topology=topology,
            cluster=cluster,
        )
    finally:
        stop(daemon_proc)
        if redis_proc is None and cluster is None and redis_url is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                _forget_keys(redis_url, tag)
        stop(redis_proc)
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
