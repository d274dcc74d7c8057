"""Metering on the gateway's routes: the usage draft of each inference request, its answer headers, its row.

:func:`metering_middleware` runs outermost on the API: it sees every answer of an inference route as sent
(errors rendered included), adds the four pricing figures (:data:`~modelcluster.api.metering.METER_HEADERS`) to
answers not yet sent, and records one usage row per authenticated request, whatever happened to it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime

from aiohttp import web

from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.api.metering import (
    INFERENCE_SECONDS_HEADER,
    METER_HEADER,
    METER_PRICE_HEADER,
    MeterReading,
    format_figure,
    parse_seconds,
)
from modelcluster.api.streaming import TokenUsage, token_count
from modelcluster.catalog.pricing import FREE, Meter, cost
from modelcluster.gateway.metering.records import UsageDraft, request_id
from modelcluster.gateway.metering.service import Metering
from modelcluster.gateway.request_keys import KEY_ID, TENANT
from modelcluster.gateway.usage import REQUEST_USAGE_SINK, UsageRecord

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
METERING: web.AppKey[Metering] = web.AppKey("metering", Metering)
#: The UsageDraft of an inference request.
USAGE = web.RequestKey("usage", UsageDraft)
METERED_ROUTES = frozenset({"run", "openai_chat", "openai_completions", "openai_responses"})
REQUEST_ID_HEADER = "X-Request-Id"
#: The status recorded for a request whose client went away before its answer.
CLIENT_GONE = 499


def draft_of(request: web.Request) -> UsageDraft | None:
    return request.get(USAGE)


def set_meter(draft: UsageDraft | None, model: str, task: str, cluster: str, meter: Meter) -> None:
    if draft is None:
        return
    draft.model, draft.task, draft.cluster = model, task, cluster
    draft.meter, draft.meter_price = meter.name, meter.price


def provider_usage(
    draft: UsageDraft | None, model: str, task: str, provider: str, tokens_in: int, tokens_out: int
) -> None:
    """A closed model's answer: the provider's token counts, cost 0 (the provider bills the caller's key)."""
    if draft is None:
        return
    set_meter(draft, model, task, provider, FREE)
    draft.tokens_in, draft.tokens_out = tokens_in, tokens_out


def meter_provider(request: web.Request, model: str, task: str, provider: str) -> None:
    """A closed model's request: metered at price 0, its token counts taken from the provider's usage record."""
    draft = draft_of(request)
    if draft is None:
        return
    provider_usage(draft, model, task, provider, 0, 0)

    def heard(record: UsageRecord) -> None:
        draft.tokens_in, draft.tokens_out = record.prompt_tokens, record.completion_tokens

    request[REQUEST_USAGE_SINK] = heard


def observe_upstream(draft: UsageDraft | None, status: int, headers: Mapping[str, str], elapsed: float) -> None:
    """The pod's answer: its time on the request (the gateway's time to its last byte where it told none, 0 for a
    failed answer that told none) and its token counts."""
    if draft is None:
        return
    told = parse_seconds(headers.get(INFERENCE_SECONDS_HEADER))
    draft.inference_seconds = told if told is not None else (elapsed if status < 400 else 0.0)
    draft.tokens_in = token_count(headers.get(PROMPT_TOKENS_HEADER))
    draft.tokens_out = token_count(headers.get(COMPLETION_TOKENS_HEADER))


def stream_metered(draft: UsageDraft | None, told: float | None, usage: TokenUsage | None, elapsed: float) -> None:
    """A stream's end: the pod's time on it as its last event told (else the gateway's time) and its tokens."""
    if draft is None:
        return
    draft.inference_seconds = told if told is not None else elapsed
    if usage is not None:
        draft.tokens_in, draft.tokens_out = usage.prompt_tokens, usage.completion_tokens


def reading_of(draft: UsageDraft) -> MeterReading:
    return MeterReading(
        draft.meter, draft.meter_price, draft.inference_seconds, cost(draft.meter_price, draft.inference_seconds)
    )


def meter_headers(draft: UsageDraft | None) -> dict[str, str]:
    """The meter and its price, for a stream's headers (its time and cost are known only at its end)."""
    if draft is None:
        return {}
    return {METER_HEADER: draft.meter, METER_PRICE_HEADER: format_figure(draft.meter_price)}


@web.middleware
async def metering_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name not in METERED_ROUTES:
        return await handler(request)
    now = datetime.now(UTC)
    draft = UsageDraft(request_id(now), now, time.monotonic())
    request[USAGE] = draft
    response: web.StreamResponse | None = None
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except (asyncio.CancelledError, ConnectionResetError):
        status = CLIENT_GONE
        raise
    finally:
        if response is not None and not response.prepared:
            response.headers.update(reading_of(draft).headers())
            response.headers[REQUEST_ID_HEADER] = draft.request_id
        tenant, key_id = request.get(TENANT), request.get(KEY_ID)
        if tenant is not None:
            record = draft.record(str(tenant), str(key_id or ""), status, time.monotonic() - draft.started_monotonic)
            request.app[METERING].record(record)
