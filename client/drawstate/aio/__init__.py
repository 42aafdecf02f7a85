"""drawstate for asyncio: AsyncClient and AsyncMultiDraw, with the blocking API's methods, errors and rules.

    from drawstate.aio import AsyncClient, AsyncMultiDraw

    async with AsyncClient() as client:
        async with AsyncMultiDraw.start(client, "player:1001", 10, metadata=metadata) as draw:
            while not draw.finished:
                await draw.record(roll())

One connection carries every task's calls, pipelined; each call has its own timeout, and a
cancelled call leaves the connection in step. msgpack is still the only dependency; it runs on
asyncio's loop and on uvloop's.
"""

from drawstate.aio.client import AsyncClient
from drawstate.aio.multidraw import AsyncMultiDraw

__all__ = ["AsyncClient", "AsyncMultiDraw"]
