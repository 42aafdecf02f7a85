"""The daemon's lifecycle: start Redis access, listen, serve, and stop cleanly on a signal.

Start: the embedded Redis if no URL was given, the store, the journal of
deferred rollbacks, then the socket (0660 by default, or the one systemd
passes). Stop (SIGTERM/SIGINT): stop accepting, answer every request already
in flight, flush replies, close connections and Redis, remove the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import resource
import signal
import socket
from pathlib import Path

from drawstate import hot_path
from drawstated import __version__
from drawstated.config import Config, redact_url
from drawstated.deferred import JOURNAL_NAME, DeferredCleanup
from drawstated.errors import RequestError
from drawstated.ops import OpTable
from drawstated.ops.context import OpContext
from drawstated.redis.retry import OutageLog, RetryPolicy
from drawstated.redis.topology import connect_backend
from drawstated.server import systemd
from drawstated.server.connection import Connection
from drawstated.server.embedded import EmbeddedRedis
from drawstated.server.locks import DaemonLocks, claim_socket_path
from drawstated.server.metrics import MetricsServer, StatsCollector
from drawstated.server.startup import BadConfig
from drawstated.server.state import ServerState
from drawstated.stats import Stats
from drawstated.storage.store import Store
from drawstated.storage.stream import OutcomeStream, Publisher
from drawstated.storage.sweeper import Sweeper

log = logging.getLogger("drawstated.server.process")

#: Descriptors kept for Redis, the journal, metrics and the listener beyond client connections.
FD_RESERVE = 64
#: Time given at start-up to reach Redis and load the scripts before serving anyway.
STARTUP_REDIS_WAIT_S = 5.0
LISTEN_BACKLOG = 1024


def usable_connections(wanted: int) -> int:
    """Raise the soft descriptor limit toward the hard one so `wanted` connections fit.

    Past the descriptor limit a connection can be neither served nor refused
    (accept fails and it waits in the backlog), so when the hard limit is too
    low the connection limit shrinks instead, and the extra ones get `overloaded`.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FD_RESERVE
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    if soft >= needed:
        return wanted
    usable = max(1, soft - FD_RESERVE)
    log.warning("descriptor limit too low for max_connections; serving fewer",
                extra={"max_connections": wanted, "usable": usable, "nofile": soft})  # fmt: skip
    return usable


def bind_socket(config: Config) -> socket.socket:
    """Bind the unix socket with its mode set before anyone can connect.

    Call it holding the socket path's lock (DaemonLocks): only a stale socket is
    removed; a live one or any other file at the path is refused, never deleted.
    """
    path = config.socket_path
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    claim_socket_path(path)
    if config.socket_group:
        try:
            gid = grp.getgrnam(config.socket_group).gr_gid
        except KeyError:
            raise BadConfig(f"socket group {config.socket_group!r} does not exist") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~config.socket_mode)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, config.socket_mode)
    if config.socket_group:
        os.chown(path, -1, gid)
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class Server:
    """One daemon: `await serve()` runs until `request_stop()` (or a signal) and shuts down."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.stats = Stats()
        self.embedded: EmbeddedRedis | None = None
        self.store: Store | None = None
        self.cleanup: DeferredCleanup | None = None
        self.stream: OutcomeStream | None = None
        self.publisher: Publisher | None = None
        self.sweeper: Sweeper | None = None
        self.state: ServerState | None = None
        self.listener: asyncio.AbstractServer | None = None
        self.owns_socket_path = False
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._watchdog: asyncio.Task[None] | None = None
        self.metrics: MetricsServer | None = None
        self.locks = DaemonLocks()

    def request_stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        try:
            await self.start()
            await self._stop.wait()
        finally:
            if self.locks.held:  # else start was refused at the locks: it changed nothing
                await self.shutdown()

    async def start(self) -> None:
        config = self.config
        _check_metrics_address(config)
        activated = systemd.listen_socket()  # a socket systemd passes has a path that is systemd's
        # Before anything a second daemon could disturb: the embedded Redis, the journal, the socket.
        self.locks.acquire(config.data_dir, None if activated else config.socket_path)
        # hot_path: whether this daemon runs its compiled build (drawstate/hotpath.py), for operators.
        essentials = {**config.essentials(), "hot_path": hot_path()}
        log.info("starting drawstate daemon %s", __version__, extra=essentials)
        log.debug("configuration", extra={"config": repr(config)})
        url = config.redis_url
        if config.embedded:
            self.embedded = EmbeddedRedis(config.data_dir)
            url = await self.embedded.start()
        self.store = Store.connect(
            connect_backend(
                config, url, on_batch=self.stats.count_batch, on_connect=self.stats.count_connect
            ),
            config,
            RetryPolicy(outage=OutageLog(self.stats.outage_failures), on_retry=self.stats.count_retry),
        )
        await self._load_scripts(url)
        await self._start_background(config)
        assert self.stream is not None and self.publisher is not None and self.cleanup is not None
        ops = OpTable.build(
            OpContext(config, self.store, self.stream, self.publisher, self.cleanup, self.stats)
        )
        self.state = ServerState(config, ops, self.stats)
        self.state.max_connections = usable_connections(config.max_connections)
        sock = activated
        if sock is None:
            sock = bind_socket(config)
            self.owns_socket_path = True
        loop = asyncio.get_running_loop()
        state = self.state
        self.listener = await loop.create_unix_server(lambda: Connection(state), sock=sock)
        if config.metrics_port is not None:
            cleanup = self.cleanup
            collector = StatsCollector(self.stats, lambda: len(cleanup))
            self.metrics = MetricsServer(collector, config.metrics_port, config.metrics_addr)
            try:
                self.metrics.start()
            except OSError as exc:  # an address that does not resolve, a port taken
                raise BadConfig(
                    f"metrics cannot listen on {config.metrics_addr}:{config.metrics_port}: {exc}"
                ) from None
        self._start_watchdog()
        systemd.notify("READY=1", f"STATUS=serving on {config.socket_path}")
        log.info("ready", extra={"socket": str(config.socket_path), "redis": redact_url(url)})
        self.started.set()

    async def _load_scripts(self, url: str | None) -> None:
        assert self.store is not None
        try:
            await self.store.load_scripts(asyncio.get_running_loop().time() + STARTUP_REDIS_WAIT_S)
        except RequestError:
            # Serve anyway: requests get retryable redis_unavailable, and NOSCRIPT loads them later.
            log.error(
                "redis unreachable at start-up; serving with retryable errors",
                extra={"redis": redact_url(url)},
            )

    async def _start_background(self, config: Config) -> None:
        """The tasks that finish what requests start: events to write, deferred rollbacks, the sweep."""
        assert self.store is not None
        self.stream = OutcomeStream(self.store.commands, config.prefix)
        self.publisher = Publisher(self.store, self.stream)
        self.publisher.start()
        self.cleanup = DeferredCleanup(
            config.data_dir / JOURNAL_NAME, self.store, self.stream, self.publisher, config.cleanup_retry_s
        )
        self.cleanup.replay_journal()
        self.cleanup.start()
        for group in config.outcome_groups:
            try:
                await self.stream.create_group(
                    group, asyncio.get_running_loop().time() + STARTUP_REDIS_WAIT_S
                )
            except RequestError:
                log.error("outcome group not created yet: redis unreachable", extra={"group": group})
        self.sweeper = Sweeper(self.store, self.stream, config, self.stats.sweeps)
        self.sweeper.start()

    async def _stop_background(self) -> None:
        """Stop the background tasks; what they had not finished is in Redis or the journal.

        Nothing here may end shutdown early: the socket must still be removed and the locks freed.
        """
        for background in (self.sweeper, self.cleanup, self.publisher):
            if background is not None:
                try:
                    await background.stop()
                except Exception:
                    log.exception(
                        "background task failed to stop cleanly", extra={"task": type(background).__name__}
                    )

    def _start_watchdog(self) -> None:
        interval = systemd.watchdog_interval_s()
        if interval is None:
            return

        async def ping_watchdog() -> None:
            while True:
                systemd.notify("WATCHDOG=1")
                await asyncio.sleep(interval)

        self._watchdog = asyncio.get_running_loop().create_task(ping_watchdog())

    async def shutdown(self) -> None:
        systemd.notify("STOPPING=1", "STATUS=stopping")
        log.info("stopping: no new connections; answering requests in flight")
        if self.listener is not None:
            self.listener.close()
        state = self.state
        if state is not None:
            for connection in list(state.connections):
                connection.close_when_idle()
            try:
                await asyncio.wait_for(state.idle.wait(), self.config.shutdown_grace_s)
            except TimeoutError:
                log.error("shutdown grace period over with requests in flight",
                          extra={"in_flight": self.stats.in_flight})  # fmt: skip
            for connection in list(state.connections):
                if connection.transport is not None:
                    connection.transport.close()  # past the grace period; flushes what was written
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.metrics is not None:
            self.metrics.stop()
        await self._stop_background()
        if self.store is not None:
            await self.store.close()
        if self.embedded is not None:
            await self.embedded.stop()
        if self.owns_socket_path:
            with contextlib.suppress(FileNotFoundError):
                Path(self.config.socket_path).unlink()
        self.locks.release()  # last: the next daemon starts once our socket and Redis are gone
        log.info("stopped")


async def _main(config: Config) -> None:
    server = Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.serve()


def run(config: Config) -> None:
    """Run the daemon until SIGTERM/SIGINT on uvloop (asyncio's loop if uvloop is missing)."""
    try:
        import uvloop  # noqa: PLC0415  # optional at import time; the daemon extra installs it
    except ImportError:
        log.warning("uvloop not installed; using the asyncio event loop")
        asyncio.run(_main(config))
    else:
        uvloop.run(_main(config))


def _check_metrics_address(config: Config) -> None:
    """An address the metrics listener could never use is a configuration error, found before anything
    is touched (a port another process holds is found when it binds, after start-up)."""
    if config.metrics_port is None:
        return
    try:
        socket.getaddrinfo(config.metrics_addr, config.metrics_port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BadConfig(
            f"metrics cannot listen on {config.metrics_addr}:{config.metrics_port}: {exc}"
        ) from None
