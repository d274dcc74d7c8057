"""One pooled HTTP client per provider: a request out, the provider's answer or stream events back.

Timeouts (:class:`~.settings.ProviderSettings`): connecting, the answer's headers (first byte) and the whole answer,
each a 504 (inside a stream, its error). A stream is read as it comes, never buffered whole: :meth:`events` yields
each event once it is complete, and ``None`` after ``keepalive_s`` of provider silence so the caller can keep its
client's connection alive. Leaving :meth:`events` early (the caller's client went away) closes the upstream
connection, which ends the provider's generation. Every error's message is scrubbed of the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import aiohttp

from modelcluster.api.errors import ApiError, BadGateway, GatewayTimeout
from modelcluster.api.streaming import TokenUsage
from modelcluster.gateway.providers.base import (
    Adapter,
    Answer,
    ProviderEvent,
    StreamDecoder,
    StreamFailed,
    UpstreamRequest,
)
from modelcluster.gateway.providers.errors import decode_json
from modelcluster.gateway.providers.metrics import ProviderMetrics
from modelcluster.gateway.providers.scrub import scrub
from modelcluster.gateway.providers.settings import ProviderSettings
from modelcluster.gateway.providers.sse import EventTooLarge, SSEDecoder

logger = logging.getLogger(__name__)

#: The largest error body or whole answer read from a provider.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
#: How long the end of a finished stream is waited for before its connection is closed instead of reused.
DRAIN_S = 0.5


def scrubbed(error: ApiError, key: str) -> ApiError:
    """``error`` with the key (and fragments of it) taken out of its message."""
    error.message = scrub(error.message, key)
    error.args = (error.message,)
    return error


@dataclass
class Exchange:
    """One request to a provider: the answer's headers have come; read it whole or as events, once."""

    client: ProviderClient
    response: aiohttp.ClientResponse
    key: str
    sent_at: float
    decoder: StreamDecoder | None = None

    @property
    def counted(self) -> TokenUsage | None:
        """What the stream's decoder has counted so far (a stream that broke off keeps its counts)."""
        return self.decoder.usage if self.decoder is not None else None

    async def whole(self) -> Answer:
        try:
            body = await self.client.read(self.response)
        finally:
            self.response.release()
        self.client.first_byte(self.sent_at)
        decoded = decode_json(body)
        if decoded is None:
            self.client.metrics.failed(self.client.name, "protocol")
            raise BadGateway(f"{self.client.name} answered a body that is not JSON")
        try:
            return self.client.adapter.answer(decoded)
        except ApiError as error:
            raise scrubbed(error, self.key) from None


class ProviderClient:
    """The client of one provider, with its own connection pool (``concurrency`` connections at most)."""

    def __init__(self, adapter: Adapter, settings: ProviderSettings, metrics: ProviderMetrics) -> None:
        self.adapter = adapter
        self.name = adapter.name
        self.settings = settings
        self.metrics = metrics
        self.base_url = str(settings.base_url or adapter.default_base_url).rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            s = self.settings
            connector = aiohttp.TCPConnector(
                limit=s.concurrency, limit_per_host=s.concurrency, keepalive_timeout=60, enable_cleanup_closed=True
            )
            timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=s.connect_timeout_s)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, upstream: UpstreamRequest, key: str) -> Exchange:
        """POST ``upstream``; the :class:`Exchange` of a 200, else the provider's error as the API's (scrubbed)."""
        url = self.base_url + upstream.path
        sent_at = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.first_byte_timeout_s):
                response = await self.session.post(url, json=upstream.body, headers=dict(upstream.headers))
        except TimeoutError:
            self.metrics.failed(self.name, "timeout")
            raise GatewayTimeout(f"{self.name} did not answer within its timeout") from None
        except aiohttp.ClientConnectorError as error:
            self.metrics.failed(self.name, "connect")
            logger.info("connecting to %s failed: %s", self.name, scrub(str(error.os_error), key))
            raise BadGateway(f"{self.name} could not be reached") from None
        except aiohttp.ClientError as error:
            self.metrics.failed(self.name, "protocol")
            raise BadGateway(f"{self.name} failed to answer: {type(error).__name__}") from None
        if response.status != 200:
            try:
                body = await self.read(response)
            finally:
                response.release()
            self.metrics.failed(self.name, "status")
            raise scrubbed(self.adapter.error(response.status, body, response.headers), key) from None
        return Exchange(self, response, key, sent_at)

    async def read(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.content.iter_any():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    self.metrics.failed(self.name, "protocol")
                    raise BadGateway(f"{self.name} answered more than {MAX_ANSWER_BYTES} bytes")
                chunks.append(chunk)
        except aiohttp.ClientError as error:
            self.metrics.failed(self.name, "protocol")
            raise BadGateway(f"{self.name} broke off its answer: {type(error).__name__}") from None
        return b"".join(chunks)

    def first_byte(self, sent_at: float) -> None:
        self.metrics.first_byte.labels(self.name).observe(time.monotonic() - sent_at)

    async def events(
        self, exchange: Exchange, keepalive_s: float | None = None
    ) -> AsyncGenerator[ProviderEvent | None, None]:
        """The stream's events as they complete; ``None`` after ``keepalive_s`` without any (when given).

        The last event is :class:`~modelcluster.api.streaming.Done` or :class:`StreamFailed`.
        """
        response, key = exchange.response, exchange.key
        decoder = exchange.decoder = self.adapter.decoder()
        frames = SSEDecoder()
        loop = asyncio.get_running_loop()
        deadline = exchange.sent_at + self.settings.total_timeout_s
        first = True
        read: asyncio.Future[bytes] | None = None
        try:
            while not decoder.finished:
                read = asyncio.ensure_future(response.content.readany())
                while not read.done():
                    left = deadline - loop.time()
                    if left <= 0:
                        self.metrics.failed(self.name, "timeout")
                        yield StreamFailed(GatewayTimeout(f"{self.name} did not finish its answer in time"))
                        return
                    wait = left if keepalive_s is None else min(left, keepalive_s)
                    await asyncio.wait({read}, timeout=wait)
                    if not read.done() and keepalive_s is not None and deadline > loop.time():
                        yield None
                chunk = read.result()
                read = None
                if first and chunk:
                    first = False
                    self.first_byte(exchange.sent_at)
                messages = frames.feed(chunk) if chunk else frames.close()
                for message in messages:
                    for event in decoder.feed(message):
                        yield _scrubbed_event(event, key, self)
                if not chunk:
                    for event in decoder.close():
                        yield _scrubbed_event(event, key, self)
            if not response.content.at_eof():
                # The provider's answer is complete: read its end (the chunked terminator, at once) so the
                # connection goes back to the pool instead of being closed.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_S):
                        await response.content.read()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as error:
            self.metrics.failed(self.name, "protocol")
            yield StreamFailed(BadGateway(f"{self.name} broke off its answer: {type(error).__name__}"))
        except EventTooLarge as error:
            self.metrics.failed(self.name, "protocol")
            yield StreamFailed(BadGateway(f"{self.name} sent {error}"))
        finally:
            if read is not None and not read.done():
                read.cancel()
            if decoder.finished and response.content.at_eof():
                response.release()
            else:
                response.close()


def _scrubbed_event(event: ProviderEvent, key: str, client: ProviderClient) -> ProviderEvent:
    if isinstance(event, StreamFailed):
        client.metrics.failed(client.name, "stream")
        scrubbed(event.error, key)
    return event
