"""A lean Redis connection for the hot path: an asyncio Protocol speaking RESP2 through hiredis.

redis-py's asyncio client spends more time building commands, walking its
stream reader and running its retry and observability hooks than Redis takes
to answer; the benchmark showed it. Here a command is packed once (in C, by
hiredis), written straight to the transport, and each reply resolves the next
waiting future in FIFO order — Redis answers a connection in order. Replies of
callers that gave up are read and dropped, so the stream never desyncs. Error
replies are typed as hiredis parses them (errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from drawstated.redis.errors import DemotedReply, parse_error

log = logging.getLogger("drawstated.redis.resp")
pack_command = hiredis.pack_command


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: parsed from a URL, secrets kept out of repr."""

    host: str | None = None
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl_context: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        where = self.path or f"{self.host}:{self.port}"
        return f"Endpoint({where}, db={self.db}, tls={self.ssl_context is not None})"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Endpoint:
        """redis://, rediss:// or unix:// URL; explicit credentials win over the URL's."""
        parts = parse_url(url)
        tls = url.startswith("rediss://")
        if tls and ssl_context is None:
            cafile = parts.get("ssl_ca_certs")
            ssl_context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        return cls(
            host=parts.get("host"),
            port=int(parts.get("port") or 6379),
            path=parts.get("path"),
            db=int(parts.get("db") or 0),
            username=username or parts.get("username"),
            password=password or parts.get("password"),
            ssl_context=ssl_context if tls else None,
        )


class RespConnection(asyncio.Protocol):
    """One Redis connection; `send` writes packed commands and returns their reply futures."""

    def __init__(self, stall_timeout_s: float) -> None:
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=parse_error)
        self._waiters: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._stall_timeout_s = stall_timeout_s
        self._last_progress = 0.0
        self._stall_timer: asyncio.TimerHandle | None = None
        self.lost = False
        #: The server told us it is no longer the master: finish what is in flight, send nothing new.
        self.demoted = False

    @property
    def outstanding(self) -> int:
        return len(self._waiters)

    @property
    def usable(self) -> bool:
        return (
            not self.lost
            and not self.demoted
            and self._transport is not None
            and not self._transport.is_closing()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self._last_progress = self._loop.time()
        waiters = self._waiters
        while (reply := self._reader.gets()) is not False:
            if not waiters:  # out of step with Redis: nothing read from here on can be trusted
                log.error("redis sent a reply no request was waiting for; dropping the connection")
                self._fail(InvalidResponse("reply with no request waiting"))
                return
            waiter = waiters.popleft()
            if isinstance(reply, DemotedReply):
                self.demoted = True  # failover: the pool reconnects, asking Sentinel anew
            if waiter.done():
                continue  # the caller gave up (deadline); its reply is dropped here
            if isinstance(reply, ResponseError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)
        if self.demoted and not waiters:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to redis lost: {exc or 'closed by server'}"))

    def send(self, packed: bytes, futures: Sequence[asyncio.Future[Any]]) -> None:
        """Write packed commands at once; `futures` get their replies, in order."""
        if not self.usable:
            raise RedisConnectionError("connection to redis is closed")
        if not self._waiters:
            self._last_progress = self._loop.time()
        self._waiters.extend(futures)
        assert self._transport is not None
        self._transport.write(packed)
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_later(self._stall_timeout_s, self._check_stall)

    async def call(self, *command: Any) -> Any:
        """One command, awaited (connection set-up and other cold paths)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self.send(pack_command(command), (future,))
        return await future

    def _check_stall(self) -> None:
        """Abort a connection whose replies stopped coming: a stalled Redis, a dead peer."""
        self._stall_timer = None
        if not self._waiters or self.lost:
            return
        idle = self._loop.time() - self._last_progress
        if idle >= self._stall_timeout_s:
            self._fail(RedisTimeoutError(f"redis sent nothing for {idle:.1f} s"))
            return
        self._stall_timer = self._loop.call_later(self._stall_timeout_s - idle, self._check_stall)

    def _fail(self, exc: Exception) -> None:
        self.lost = True
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        if self._transport is not None:
            self._transport.abort()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    def close(self) -> None:
        if self._transport is not None and not self.lost:
            self._transport.close()
        self.lost = True

    def retire(self) -> None:
        """Close once the replies already asked for have arrived (a demoted master's connection)."""
        self.demoted = True
        if not self._waiters:
            self.close()


async def connect(endpoint: Endpoint, *, connect_timeout_s: float, stall_timeout_s: float) -> RespConnection:
    """Open, authenticate and select the database; redis ConnectionError if any step fails."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout_s):
            if endpoint.path:
                _, conn = await loop.create_unix_connection(
                    lambda: RespConnection(stall_timeout_s), endpoint.path
                )
            else:
                _, conn = await loop.create_connection(
                    lambda: RespConnection(stall_timeout_s),
                    endpoint.host or "localhost",
                    endpoint.port,
                    ssl=endpoint.ssl_context,
                    server_hostname=endpoint.host if endpoint.ssl_context else None,
                )
            await _handshake(conn, endpoint)
    except (OSError, TimeoutError) as exc:
        where = endpoint.path or f"{endpoint.host}:{endpoint.port}"
        raise RedisConnectionError(
            f"cannot connect to redis at {where}: {type(exc).__name__}: {exc}"
        ) from exc
    return conn


async def _handshake(conn: RespConnection, endpoint: Endpoint) -> None:
    setup: list[Sequence[Any]] = []
    if endpoint.password is not None:
        auth = (
            ("AUTH", endpoint.username, endpoint.password)
            if endpoint.username
            else ("AUTH", endpoint.password)
        )
        setup.append(auth)
    if endpoint.db:
        setup.append(("SELECT", endpoint.db))
    for command in setup:
        try:
            await conn.call(*command)
        except ResponseError as exc:
            conn.close()
            # Never echo the command: it holds the password.
            raise RedisConnectionError(f"redis refused {command[0]}: {str(exc).split(':')[0]}") from None


async def close_quietly(conn: RespConnection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
