"""A stream proxy for tests: forwards a listening socket to a server and breaks the link on cue.

Put it between a daemon and Redis (or between a client and the daemon's unix
socket) and the test decides when the network fails: `cut()` closes every
forwarded connection at once and refuses new ones until `restore()`;
`stall()` keeps connections open but forwards nothing either way until
`unstall()`; `cut_after_next_request()` lets one request through, waits for
the server's answer (so the request was applied) and closes both sides
instead of forwarding it: a reply lost after the write; `cut_at_next_request()`
cuts everything as that request arrives: a request that never reached the
server. Each control call returns once its effect is in place.

It runs an asyncio loop in one background thread; `close()` stops it and
closes every socket it opened (the fixtures call it, and `with` does too).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

#: How long a connection to the target may take before the client's side is closed.
CONNECT_TIMEOUT_S = 2.0
#: How long a control call (cut, restore, close...) may take on the proxy's loop.
CONTROL_TIMEOUT_S = 5.0
#: Bytes read per forwarded chunk.
CHUNK_BYTES = 64 * 1024

#: ("127.0.0.1", port) for TCP, or a unix socket path.
Target = tuple[str, int] | str | Path


class _Link:
    """One forwarded connection: the accepted client side and the connection to the target."""

    def __init__(self, client: asyncio.StreamWriter, task: asyncio.Task[Any] | None) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.task = task
        #: Its next answer from the target is dropped, then both sides close.
        self.doomed = False
        self.then_cut = False
        #: Written-out bytes are flushed before closing (the lost-reply cut), not reset.
        self.graceful = False
        #: The doomed reply was dropped: `reply_dropped` is set once the link is closed.
        self.dropped = False

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]

    def abort(self) -> None:
        for writer in self.writers():
            writer.transport.abort()

    def close(self) -> None:
        for writer in self.writers():
            if self.graceful:
                writer.close()
            else:
                writer.transport.abort()


class TcpProxy:
    """Listens on 127.0.0.1:<free port> (or on `listen_path`, a unix socket) and forwards to `target`."""

    def __init__(self, target: Target, *, listen_path: Path | None = None) -> None:
        self.target = target
        self.listen_path = listen_path
        self.port = 0
        #: Counters, updated on the proxy's thread (read them from the test; ints are atomic enough).
        self.connections_accepted = 0
        self.connections_refused = 0
        self.upstream_failures = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self.replies_dropped = 0
        self.requests_lost = 0
        #: Set when `cut_after_next_request` dropped its reply.
        self.reply_dropped = threading.Event()
        self._links: set[_Link] = set()
        self._refusing = False
        self._armed: tuple[bytes, bool] | None = None
        #: The request `cut_at_next_request` waits for.
        self._losing: bytes | None = None
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._run, name="test-proxy", daemon=True)
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(CONTROL_TIMEOUT_S)
        if not self._serving():
            self.close()
            raise RuntimeError(f"proxy did not start: {self._start_error!r}")
        return self

    def _serving(self) -> bool:
        return self._ready.is_set() and self._start_error is None and self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported by start()
            self._start_error = exc
        self._ready.set()
        if self._start_error is None:
            self._loop.run_forever()
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        if self.listen_path is not None:
            self._server = await asyncio.start_unix_server(self._serve, str(self.listen_path))
        else:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = int(self._server.sockets[0].getsockname()[1])

    def close(self) -> None:
        """Close every connection and the listener, stop the thread; safe to call twice."""
        if self._serving():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread.ident is not None:
            self._thread.join(CONTROL_TIMEOUT_S)
            assert not self._thread.is_alive(), "proxy thread did not stop"
        elif not self._loop.is_closed():
            self._loop.close()  # never started
        if self.listen_path is not None:
            self.listen_path.unlink(missing_ok=True)

    async def _shutdown(self) -> None:
        self._refusing = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._drop_all()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- where it listens ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        """redis:// URL of the proxy's TCP side, database 0."""
        assert self.listen_path is None, "a unix-socket proxy has a path, not a URL"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def connections_open(self) -> int:
        return len(self._links)

    # --- control, from the test's thread ---------------------------------------------------

    def cut(self) -> None:
        """Reset every forwarded connection now; accept and close new ones until `restore()`."""
        self._call(self._cut())

    def restore(self) -> None:
        """Forward new connections again (after `cut`, or the cut of `cut_after_next_request`), and
        forget a `cut_at_next_request` still armed."""
        self._call(self._set(refusing=False, losing=b""))

    def stall(self) -> None:
        """Keep every connection open but forward nothing, either way, until `unstall()`."""
        self._call(self._set(flowing=False))

    def unstall(self) -> None:
        """Forward again, starting with what was held back."""
        self._call(self._set(flowing=True))

    def cut_after_next_request(self, containing: bytes = b"", *, then_cut: bool = False) -> None:
        """Lose the answer to the next request: forward it, drop the reply, close both sides.

        The next client-to-target chunk holding `containing` (any chunk when empty)
        is forwarded; when the target's next bytes arrive on that connection they
        are dropped and both sides are closed, the target's gracefully, so the
        request is applied whatever else was queued. `then_cut` also cuts every
        connection and refuses new ones until `restore()`. `reply_dropped` is set
        once the link is closed.
        """
        self.reply_dropped.clear()
        self._call(self._set(armed=(containing, then_cut)))

    def cut_at_next_request(self, containing: bytes) -> None:
        """The next client-to-target chunk holding `containing` is not forwarded: every connection
        is cut there, and new ones refused until `restore()`. (A request is matched within one
        chunk: a command of a few hundred bytes arrives whole.)"""
        self._call(self._set(losing=containing))

    def wait_reply_dropped(self, timeout: float = CONTROL_TIMEOUT_S) -> None:
        assert self.reply_dropped.wait(timeout), "the armed request never got its reply dropped"

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if not self._serving():
            coro.close()
            raise RuntimeError("the proxy is not running")
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

    # --- on the proxy's loop --------------------------------------------------------------

    async def _set(
        self,
        *,
        refusing: bool | None = None,
        flowing: bool | None = None,
        armed: tuple[bytes, bool] | None = None,
        losing: bytes | None = None,
    ) -> None:
        assert self._flowing is not None
        if refusing is not None:
            self._refusing = refusing
        if losing is not None:
            self._losing = losing or None  # b"": disarmed
        if flowing is not None:
            (self._flowing.set if flowing else self._flowing.clear)()
        if armed is not None:
            self._armed = armed

    async def _cut(self) -> None:
        self._refusing = True
        await self._drop_all()

    async def _drop_all(self, keep: _Link | None = None) -> None:
        links = [link for link in self._links if link is not keep]
        for link in links:
            link.abort()
        tasks = [link.task for link in links if link.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=CONTROL_TIMEOUT_S)

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.target, tuple):
            return await asyncio.open_connection(*self.target)
        return await asyncio.open_unix_connection(str(self.target))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        if self._refusing:
            self.connections_refused += 1
            writer.transport.abort()
            return
        link = _Link(writer, asyncio.current_task())
        self._links.add(link)
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    up_reader, link.upstream = await self._open_upstream()
            except (OSError, TimeoutError):
                self.upstream_failures += 1
                return
            if self._refusing:
                return
            pumps = {
                asyncio.create_task(self._pump(link, reader, link.upstream, upstream=True)),
                asyncio.create_task(self._pump(link, up_reader, writer, upstream=False)),
            }
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            self._links.discard(link)
            link.close()
            if link.dropped:
                await asyncio.sleep(0)  # let the transports finish closing before the test goes on
                self.reply_dropped.set()

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool
    ) -> None:
        """Copy one direction until EOF or an error on either side (which ends the link)."""
        assert self._flowing is not None
        seen = b""  # the end of what came before, so a `containing` split across chunks still matches
        try:
            while data := await reader.read(CHUNK_BYTES):
                await self._flowing.wait()
                if upstream and self._losing is not None and self._losing in data:
                    await self._lose_request(link)
                    return
                if upstream:
                    self.bytes_up += len(data)
                    seen = self._match(link, seen + data)
                elif link.doomed:
                    await self._drop_reply(link)
                    return
                else:
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            return  # reset or broken pipe: the link ends

    def _match(self, link: _Link, window: bytes) -> bytes:
        """Doom `link` if the armed request is in `window`; returns the part to keep for the next chunk."""
        if self._armed is None:
            return b""
        needle, then_cut = self._armed
        if needle in window:
            self._armed = None
            link.doomed, link.then_cut = True, then_cut
            return b""
        return window[-(len(needle) - 1) :] if len(needle) > 1 else b""

    async def _lose_request(self, link: _Link) -> None:
        self._losing = None
        self.requests_lost += 1
        self._refusing = True
        await self._drop_all(keep=link)
        link.abort()  # this link's own task ends when its pump returns

    async def _drop_reply(self, link: _Link) -> None:
        self.replies_dropped += 1
        link.graceful = link.dropped = True
        if link.then_cut:
            self._refusing = True
            await self._drop_all(keep=link)
