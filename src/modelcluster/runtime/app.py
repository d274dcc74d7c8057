"""HTTP routes: ``POST /run``, ``GET /health``, ``GET /status``, ``GET /metrics``; built by ``create_app``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelcluster.api import error_body, normalize, parse_run_request
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.runtime import media
from modelcluster.runtime.batching import Scheduler
from modelcluster.runtime.errors import (
    InferenceError,
    InputError,
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
    RuntimeHTTPError,
)
from modelcluster.runtime.loading import LoadProgress, load_handler, memory_report
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.queueing import Job, StreamEnd
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler, MediaOutput, MediaRef, TokenUsage

logger = logging.getLogger(__name__)

Loader = Callable[[RuntimeSettings, LoadProgress], Handler]
MODEL_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)


@dataclass
class RuntimeState:
    settings: RuntimeSettings
    metrics: RuntimeMetrics
    progress: LoadProgress = field(default_factory=LoadProgress)
    handler: Handler | None = None
    scheduler: Scheduler | None = None
    http: httpx.AsyncClient | None = None

    def ready(self) -> tuple[Handler, Scheduler]:
        if self.handler is None or self.scheduler is None:
            if self.progress.error is not None:
                raise NotReady(f"Fatal, model failed to load: {self.progress.error}")
            raise NotReady("Model is not ready yet")
        return self.handler, self.scheduler

    async def load(self, loader: Loader) -> None:
        try:
            handler = await asyncio.to_thread(loader, self.settings, self.progress)
        except Exception as exc:
            logger.exception("model failed to load")
            self.progress.update(phase="failed", error=f"{type(exc).__name__}: {exc}")
            self.metrics.errors.labels(kind="load").inc()
            return
        scheduler = Scheduler(
            handler,
            self.metrics,
            max_queue=self.settings.max_queue,
            max_batch_size=self.settings.max_batch_size,
            max_batch_wait_s=self.settings.max_batch_wait_ms / 1000.0,
        )
        scheduler.start()
        self.handler, self.scheduler = handler, scheduler
        self.metrics.model_loaded.set(1)
        self.metrics.model_load_seconds.set(self.progress.load_seconds or 0.0)
        logger.info("model ready: %s (%s) on %s", self.settings.model_id, self.settings.task, self.progress.device)


class RequestMetricsMiddleware:
    """Counts answers by status and times whole ``/run`` requests (a stream until its last byte)."""

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/run":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 500}

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.requests.labels(status=str(status["code"])).inc()
            self.metrics.stage_seconds.labels(stage="total").observe(time.monotonic() - started)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(message), status_code=status)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return await media.collect_bytes(request.stream(), limit, "request body")


def model_error(exc: BaseException) -> RuntimeHTTPError:
    """Errors raised by model code: input-shaped ones answer 422, the rest 500."""
    if isinstance(exc, RuntimeHTTPError):
        return exc
    if isinstance(exc, MODEL_INPUT_ERRORS):
        return InputError(f"the model could not process this input: {type(exc).__name__}: {exc}")
    return InferenceError(f"inference failed: {type(exc).__name__}: {exc}")


def sse_event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def usage_headers(usage: TokenUsage | None) -> dict[str, str]:
    """The token counts of a generation answered whole, as response headers."""
    if usage is None:
        return {}
    return {PROMPT_TOKENS_HEADER: str(usage.prompt_tokens), COMPLETION_TOKENS_HEADER: str(usage.completion_tokens)}


def usage_event(usage: TokenUsage) -> str:
    """The SSE event sent right before ``[DONE]``: no text, the generation's token counts."""
    return sse_event({"error": None, "output": "", "usage": asdict(usage)})


def create_app(settings: RuntimeSettings, *, loader: Loader = load_handler) -> FastAPI:
    """The runtime's ASGI app; the model loads in the background once the app starts."""
    metrics = RuntimeMetrics(settings.task, settings.model_id)
    state = RuntimeState(settings=settings, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.http = httpx.AsyncClient(timeout=settings.url_fetch_timeout_s)
        loading = asyncio.create_task(state.load(loader), name="model-load")
        try:
            yield
        finally:
            loading.cancel()
            if state.scheduler is not None:
                await state.scheduler.stop()
            await state.http.aclose()

    app = FastAPI(title="ModelCluster runtime", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = state
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.exception_handler(RuntimeHTTPError)
    async def runtime_error(request: Request, exc: RuntimeHTTPError) -> JSONResponse:
        metrics.errors.labels(kind=exc.kind).inc()
        return error_response(exc.status_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        metrics.errors.labels(kind="http").inc()
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        metrics.errors.labels(kind="internal").inc()
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health() -> JSONResponse:
        state.ready()
        return JSONResponse({"error": None, "output": "ready"})

    @app.get("/status")
    async def status() -> JSONResponse:
        snapshot = state.progress.snapshot()
        queue: dict[str, Any] = {"limit": settings.max_queue, "waiting": 0}
        if state.scheduler is not None:
            queue["waiting"] = state.scheduler.queue.waiting
        output = {
            "status": "ready" if state.handler else ("failed" if snapshot["error"] else "loading"),
            "model_id": settings.model_id,
            "task": settings.task,
            **snapshot,
            "memory": await asyncio.to_thread(memory_report),
            "queue": queue,
        }
        return JSONResponse({"error": None, "output": output})

    @app.get("/metrics")
    async def prometheus() -> Response:
        if state.scheduler is not None:
            state.scheduler.update_gauges()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def fetch(ref: MediaRef) -> bytes:
        if ref.base64 is not None:
            return media.decode_base64(ref.base64, settings.max_media_bytes)
        assert ref.url is not None and state.http is not None
        return await media.fetch_url(state.http, ref.url, settings.max_media_bytes)

    @app.post("/run")
    async def run(request: Request) -> Response:
        metrics.touch()
        raw = await read_body(request, settings.max_body_bytes)
        body = parse_run_request(raw)
        handler, scheduler = state.ready()
        payload = normalize(body, settings.task, handler.spec)
        params = handler.check_params(body.params)
        if body.stream and not handler.streamable:
            raise InputError(f"{settings.task} does not stream; send `stream: false`")
        scheduler.queue.reserve()
        try:
            blobs = [await fetch(ref) for ref in handler.media_refs(payload)]
            # decoding media is CPU work for a thread; text needs none
            item = (
                await asyncio.to_thread(handler.prepare, payload, blobs) if blobs else handler.prepare(payload, blobs)
            )
        except BaseException:
            scheduler.queue.unreserve()
            raise
        deadline = time.monotonic() + settings.request_timeout_s
        job = scheduler.new_job(item, params, stream=handler.streamable, deadline=deadline)
        scheduler.submit(job)
        if handler.streamable and body.stream:
            sse = "text/event-stream" in request.headers.get("accept", "")
            return StreamingResponse(
                stream_body(job, sse, settings.request_timeout_s),
                media_type="text/event-stream" if sse else "text/plain; charset=utf-8",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        headers: dict[str, str] = {}
        if handler.streamable:
            text, usage = await collect_text(job, settings.request_timeout_s)
            output = handler.finish(item, params, text)
            headers = usage_headers(usage)
        else:
            output = await wait_output(job, settings.request_timeout_s)
        if isinstance(output, MediaOutput):
            if body.json_output is False:
                return Response(output.data, media_type=output.mime)
            output = media.to_base64(output.data)
        return JSONResponse({"error": None, "output": output}, headers=headers)

    return app


async def wait_output(job: Job, limit_s: float) -> Any:
    try:
        return await asyncio.wait_for(asyncio.shield(job.future), limit_s)
    except TimeoutError as exc:
        job.cancel.set()
        raise RequestTimeout(f"the request took longer than {limit_s:g}s") from exc
    except asyncio.CancelledError:
        job.cancel.set()
        raise
    except Exception as exc:
        raise model_error(exc) from exc


async def next_chunk(job: Job, deadline: float) -> str | StreamEnd:
    assert job.chunks is not None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return await asyncio.wait_for(job.chunks.get(), remaining)


async def collect_text(job: Job, limit_s: float) -> tuple[str, TokenUsage | None]:
    """The joined text deltas of a stream job and its token usage."""
    deadline = time.monotonic() + limit_s
    parts: list[str] = []
    try:
        while True:
            try:
                chunk = await next_chunk(job, deadline)
            except TimeoutError as exc:
                raise RequestTimeout(f"the request took longer than {limit_s:g}s") from exc
            if isinstance(chunk, StreamEnd):
                if chunk.error is not None:
                    raise model_error(chunk.error) from chunk.error
                return "".join(parts), chunk.usage
            parts.append(chunk)
    finally:
        job.cancel.set()


def stream_body(job: Job, sse: bool, timeout: float) -> AsyncIterator[str]:
    """Text deltas as they come (raw by default, SSE when asked); leaving early stops the generation.

    An SSE stream that finishes sends the token usage as its last event before ``[DONE]``; the raw text has none.
    """

    async def body() -> AsyncIterator[str]:
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    chunk = await next_chunk(job, deadline)
                except TimeoutError:
                    message = f"the request took longer than {timeout:g}s"
                    yield sse_event(error_body(message)) if sse else f"\n[error] {message}"
                    return
                if isinstance(chunk, StreamEnd):
                    if chunk.error is not None:
                        message = model_error(chunk.error).message
                        yield sse_event(error_body(message)) if sse else f"\n[error] {message}"
                    elif sse:
                        if chunk.usage is not None:
                            yield usage_event(chunk.usage)
                        yield "data: [DONE]\n\n"
                    return
                yield sse_event({"error": None, "output": chunk}) if sse else chunk
        finally:
            job.cancel.set()

    return body()
