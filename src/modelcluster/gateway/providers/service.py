"""The gateway's closed-model service: the enabled providers' clients, the route decision, one request's call.

:meth:`ProviderService.client_for` tells whether a model id is a closed model (and of which provider);
:class:`Call` runs one request against it and, however it ends, counts it in the provider's metrics and reports
its :class:`~modelcluster.gateway.usage.UsageRecord`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from modelcluster.api.errors import ApiError, BadRequest, GatewayTimeout, NotFound
from modelcluster.api.streaming import Done, TokenUsage
from modelcluster.gateway.providers.base import Answer, ChatRequest, ProviderEvent, StreamFailed, UpstreamRequest
from modelcluster.gateway.providers.client import Exchange, ProviderClient
from modelcluster.gateway.providers.metrics import ProviderMetrics
from modelcluster.gateway.providers.registry import ADAPTERS, provider_of
from modelcluster.gateway.providers.settings import PROVIDER_NAMES, ProvidersSettings
from modelcluster.gateway.usage import UsageRecord, UsageReporter, UsageSink

PROVIDER_KEY_HEADER = "Provider-Key"
#: The status recorded for a request whose client went away before its answer ended.
CLIENT_CLOSED = 499


def provider_key(headers: object, model_id: str) -> str:
    """The caller's provider key (``Provider-Key``, any case); 400 naming the header when missing or empty."""
    get = getattr(headers, "get", None)
    value = get(PROVIDER_KEY_HEADER) if get is not None else None
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(
            f"{model_id} is a closed model: send your own key of its provider in the `{PROVIDER_KEY_HEADER}` header",
            param=PROVIDER_KEY_HEADER,
        )
    return value.strip()


class ProviderService:
    def __init__(self, settings: ProvidersSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.metrics = ProviderMetrics(registry)
        self.usage = UsageReporter()
        self.clients = {name: ProviderClient(ADAPTERS[name], settings.of(name), self.metrics) for name in self.enabled}

    def client_for(self, model_id: str, *, open_model: bool) -> ProviderClient | None:
        """The client of the provider serving ``model_id``, ``None`` for an open model; 404 for a disabled one."""
        name = provider_of(model_id, open_model=open_model, enabled=self.enabled)
        if name is not None:
            return self.clients[name]
        org = model_id.partition("/")[0]
        if not open_model and org in PROVIDER_NAMES:
            raise NotFound(f"{model_id}: closed models of {org} are not enabled on this gateway")
        return None

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients.values()))


@dataclass
class Call:
    """One closed-model request: send it, read the answer (whole or streamed), count and report it once."""

    service: ProviderService
    client: ProviderClient
    chat: ChatRequest
    key: str
    tenant: str
    model_id: str
    route: str
    #: Hears this call's record besides the service's sinks (the request's ledger draft).
    on_finish: UsageSink | None = None
    upstream: UpstreamRequest = field(init=False)
    started: float = field(default_factory=time.monotonic)
    reported: bool = False

    def __post_init__(self) -> None:
        self.upstream = self.client.adapter.request(self.chat, self.key)

    async def answer(self) -> Answer:
        """The whole answer; the provider's error (or 502/504) as an :class:`ApiError`."""
        try:
            async with asyncio.timeout(self.client.settings.total_timeout_s):
                exchange = await self.client.send(self.upstream, self.key)
                answer = await exchange.whole()
        except TimeoutError:
            self.client.metrics.failed(self.client.name, "timeout")
            self.finish(504, None, complete=False)
            raise GatewayTimeout(f"{self.client.name} did not finish its answer in time") from None
        except ApiError as error:
            self.finish(error.status, None, complete=False)
            raise
        except asyncio.CancelledError:
            self.finish(CLIENT_CLOSED, None, complete=False)
            raise
        self.finish(200, answer.usage, complete=True)
        return answer

    async def open(self) -> Exchange:
        """The stream's exchange, once the provider answered 200; its error (or 502/504) otherwise."""
        try:
            return await self.client.send(self.upstream, self.key)
        except ApiError as error:
            self.finish(error.status, None, complete=False)
            raise
        except asyncio.CancelledError:
            self.finish(CLIENT_CLOSED, None, complete=False)
            raise

    async def events(
        self, exchange: Exchange, keepalive_s: float | None = None
    ) -> AsyncGenerator[ProviderEvent | None, None]:
        """The stream's events (``None``: provider silence, see :meth:`ProviderClient.events`), reported at the end."""
        usage: TokenUsage | None = None
        status, complete = CLIENT_CLOSED, False
        try:
            async with aclosing(self.client.events(exchange, keepalive_s)) as events:
                async for event in events:
                    if isinstance(event, TokenUsage):
                        usage = event
                    elif isinstance(event, Done):
                        status, complete = 200, True
                    elif isinstance(event, StreamFailed):
                        status = event.error.status
                    yield event
        finally:
            decoded = exchange_usage(usage, exchange)
            self.finish(status, decoded, complete=complete)

    def finish(self, status: int, usage: TokenUsage | None, *, complete: bool) -> None:
        if self.reported:
            return
        self.reported = True
        name = self.client.name
        self.service.metrics.answered(name, status, time.monotonic() - self.started)
        counts = usage or TokenUsage()
        if counts.prompt_tokens:
            self.service.metrics.tokens.labels(name, "prompt").inc(counts.prompt_tokens)
        if counts.completion_tokens:
            self.service.metrics.tokens.labels(name, "completion").inc(counts.completion_tokens)
        record = UsageRecord(
            tenant=self.tenant,
            provider=name,
            model=self.model_id,
            route=self.route,
            prompt_tokens=counts.prompt_tokens,
            completion_tokens=counts.completion_tokens,
            status=status,
            stream=self.chat.stream,
            complete=complete,
        )
        if self.on_finish is not None:
            self.on_finish(record)
        self.service.usage.report(record)


def exchange_usage(seen: TokenUsage | None, exchange: Exchange) -> TokenUsage | None:
    """The counts of a stream: the last the provider sent, or what its decoder had counted when it broke off."""
    return seen if seen is not None else exchange.counted
