"""A demand publisher for tests and benchmarks: a real HTTP server of a feed, behind a TCP relay that can be cut.

:class:`FeedServer` serves ``GET /demand`` of a :class:`~modelcluster.api.demand.DemandFeed` with the same
handler code the gateway and the runtime use; :class:`Relay` forwards a port to it and can drop every
connection and refuse new ones (a lost connection), then listen again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from modelcluster.api.demand import DEMAND_PATH, DemandFeed, answer


class FeedServer:
    def __init__(self, feed: DemandFeed | None = None) -> None:
        self.feed = feed or DemandFeed()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        status, body = await answer(self.feed, request.query)
        return web.Response(body=body, status=status, content_type="application/json")

    async def start(self, port: int = 0) -> FeedServer:
        app = web.Application()
        app.router.add_get(DEMAND_PATH, self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            self.feed.close()
            await self._runner.cleanup()
            self._runner = None


class Relay:
    """127.0.0.1:``port`` forwarded to 127.0.0.1:``target``; :meth:`cut` drops it all, :meth:`restore` listens again."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)  # at once: a cut while the upstream connection is being made drops it too
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            self._writers.discard(writer)
            writer.close()
            return
        if self._server is None or writer not in self._writers:  # cut meanwhile
            up_writer.transport.abort()
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    async def cut(self) -> None:
        """Every connection reset, new ones refused."""
        server, self._server = self._server, None
        if server is not None:
            server.close()  # no wait_closed(): every connection is aborted here, none is waited for
        for writer in list(self._writers):
            with contextlib.suppress(OSError, RuntimeError):
                writer.transport.abort()
        self._writers.clear()
        await asyncio.sleep(0)  # the aborts take effect (connection_lost) before the caller goes on

    async def restore(self) -> None:
        await self.start()
