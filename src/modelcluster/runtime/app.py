"""HTTP routes: ``POST /run``, ``GET /health``, ``GET /status``, ``GET /metrics``; built by ``create_app``."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelcluster.api import error_body, normalize, parse_run_request
from modelcluster.api.errors import (
    ApiError,
    InferenceError,
    InputError,
    InternalError,
    NotReady,
    PayloadTooLarge,
    RequestTimeout,
)
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.api.streaming import (
    DONE_EVENT,
    RAW_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    TokenUsage,
    delta_event,
    error_event,
    raw_error,
    usage_event,
)
from modelcluster.runtime import media
from modelcluster.runtime.batching import Scheduler
from modelcluster.runtime.limits import check_request_size
from modelcluster.runtime.loading import LoadProgress, load_handler, memory_report
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.offload import json_bytes, off_loop, render_off_loop
from modelcluster.runtime.queueing import DeadlineExceeded, Job, StreamEnd
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler, MediaOutput, MediaRef
from modelcluster.runtime.urlfetch import UrlFetcher

logger = logging.getLogger(__name__)

Loader = Callable[[RuntimeSettings, LoadProgress], Handler]
#: Told the cause when the model cannot be loaded (the server then ends the process).
LoadFailureHook = Callable[[str], None]
MODEL_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass
class RuntimeState:
    settings: RuntimeSettings
    metrics: RuntimeMetrics
    progress: LoadProgress = field(default_factory=LoadProgress)
    handler: Handler | None = None
    scheduler: Scheduler | None = None
    fetcher: UrlFetcher | None = None
    draining: bool = False
    on_load_failure: LoadFailureHook | None = None

    def start_draining(self) -> None:
        """From now on ``/health`` answers 503 so readiness fails; requests are still served."""
        self.draining = True
        self.metrics.draining.set(1)

    def ready(self) -> tuple[Handler, Scheduler]:
        if self.handler is None or self.scheduler is None:
            snapshot = self.progress.snapshot()
            if snapshot["error"] is not None:
                raise NotReady(f"Fatal, model failed to load: {snapshot['error']}")
            raise NotReady(f"Model is not ready yet: loading ({snapshot['phase']}, {snapshot['load_percent']:g}%)")
        return self.handler, self.scheduler

    async def load(self, loader: Loader) -> None:
        try:
            handler = await asyncio.to_thread(loader, self.settings, self.progress)
        except Exception as exc:
            cause = f"{type(exc).__name__}: {exc}"
            logger.error("model failed to load: %s", cause, exc_info=exc)
            self.progress.update(phase="failed", error=cause)
            self.metrics.errors.labels(kind="load").inc()
            if self.on_load_failure is not None:
                self.on_load_failure(cause)
            return
        handler.limits = self.settings.limits()
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


def new_request_id(given: str | None = None) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token, else a fresh one."""
    if given is not None and REQUEST_ID_PATTERN.match(given):
        return given
    return uuid.uuid4().hex


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request (a fresh one for requests it did not see)."""
    given = getattr(request.state, "request_id", None)
    return given if isinstance(given, str) else new_request_id()


def internal_error(exc: BaseException, request_id: str, error: type[ApiError] = InferenceError) -> ApiError:
    """A 500 that tells the caller only the request id; the details go to the log under that id."""
    logger.error("internal error (request %s): %s: %s", request_id, type(exc).__name__, exc, exc_info=exc)
    return error(f"internal error (request {request_id})")


class RequestMetricsMiddleware:
    """Counts answers by status and times whole ``/run`` requests (a stream until its last byte).

    Each ``/run`` request gets an id (``request.state.request_id``), answered in ``X-Request-Id``.
    """

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/run":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 500}
        given = dict(scope["headers"]).get(REQUEST_ID_HEADER.lower().encode())
        request_id = new_request_id(given.decode("latin-1") if given is not None else None)
        scope.setdefault("state", {})["request_id"] = request_id

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
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


def model_error(exc: BaseException, request_id: str | None = None) -> ApiError:
    """Errors raised by model code: input-shaped ones answer 422, the rest 500 with only the request id."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, MODEL_INPUT_ERRORS):
        return InputError(f"the model could not process this input: {type(exc).__name__}: {exc}")
    return internal_error(exc, request_id or new_request_id())


def timeout_error(limit_s: float) -> RequestTimeout:
    return RequestTimeout(f"the request took longer than {limit_s:g}s")


def job_error(exc: BaseException, limit_s: float, request_id: str | None) -> ApiError:
    """What a failed job answers: 504 past its deadline, else the model error."""
    if isinstance(exc, DeadlineExceeded):
        return timeout_error(limit_s)
    return model_error(exc, request_id)


def usage_headers(usage: TokenUsage | None) -> dict[str, str]:
    """The token counts of a generation answered whole, as response headers."""
    if usage is None:
        return {}
    return {PROMPT_TOKENS_HEADER: str(usage.prompt_tokens), COMPLETION_TOKENS_HEADER: str(usage.completion_tokens)}


def create_app(
    settings: RuntimeSettings, *, loader: Loader = load_handler, on_load_failure: LoadFailureHook | None = None
) -> FastAPI:
    """The runtime's ASGI app; the model loads in the background once the app starts.

    A load failure is reported on ``/health`` and ``/status``; ``on_load_failure`` is then told its cause
    (the server ends the process with it, so the pod restarts and reports the cause).
    """
    metrics = RuntimeMetrics(settings.task, settings.model_id)
    state = RuntimeState(settings=settings, metrics=metrics, on_load_failure=on_load_failure)
    limits = settings.limits()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.fetcher = UrlFetcher(settings.url_policy())
        loading = asyncio.create_task(state.load(loader), name="model-load")
        try:
            yield
        finally:
            loading.cancel()
            if state.scheduler is not None:
                await state.scheduler.stop()
            await state.fetcher.aclose()

    app = FastAPI(title="ModelCluster runtime", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = state
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.exception_handler(ApiError)
    async def runtime_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(kind=exc.kind).inc()
        return error_response(exc.status, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        metrics.errors.labels(kind="http").inc()
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        metrics.errors.labels(kind="internal").inc()
        request_id = request_id_of(request)
        response = error_response(500, internal_error(exc, request_id, InternalError).message)
        response.headers[REQUEST_ID_HEADER] = request_id
        return response

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.draining:
            return error_response(503, "draining")
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
            if off_loop(len(ref.base64)):
                return await asyncio.to_thread(media.decode_base64, ref.base64, settings.max_media_bytes)
            return media.decode_base64(ref.base64, settings.max_media_bytes)
        assert ref.url is not None and state.fetcher is not None
        return await state.fetcher.fetch(ref.url)

    @app.post("/run")
    async def run(request: Request) -> Response:
        metrics.touch()
        request_id = request_id_of(request)
        try:
            return await answer(request, request_id)
        except ApiError:
            raise
        except Exception as exc:
            # answered 500 with only the request id here rather than by the server-error middleware, which
            # re-raises, making the server drop the (keep-alive) connection
            raise internal_error(exc, request_id, InternalError) from exc

    async def answer(request: Request, request_id: str) -> Response:
        raw = await read_body(request, settings.max_body_bytes)
        big = off_loop(len(raw))  # parsing, decoding and tokenizing a big body happen in a worker thread
        body = await asyncio.to_thread(parse_run_request, raw) if big else parse_run_request(raw)
        handler, scheduler = state.ready()
        payload = normalize(body, settings.task, handler.spec)
        params = handler.check_params(body.params)
        if body.stream and not (handler.streamable or handler.info.media_generator):
            # a media generator takes `stream` as the SDK sends it, with `json: false`: the media comes back raw
            raise InputError(f"{settings.task} does not stream; send `stream: false`")
        refs = handler.media_refs(payload)
        check_request_size(payload, len(refs), limits)
        scheduler.queue.reserve()
        try:
            blobs = [await fetch(ref) for ref in refs]
            # decoding media and tokenizing long texts is CPU work for a thread; a short text is prepared here
            item = (
                await asyncio.to_thread(handler.prepare, payload, blobs)
                if blobs or big
                else handler.prepare(payload, blobs)
            )
        except BaseException:
            scheduler.queue.unreserve()
            raise
        deadline = time.monotonic() + settings.request_timeout_s
        job = scheduler.new_job(item, params, stream=handler.streamable, deadline=deadline)
        scheduler.submit(job)
        if handler.streamable and body.stream:
            sse = SSE_CONTENT_TYPE in request.headers.get("accept", "")
            return StreamingResponse(
                stream_body(job, sse, settings.request_timeout_s, request_id),
                media_type=SSE_CONTENT_TYPE if sse else RAW_CONTENT_TYPE,
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        headers: dict[str, str] = {}
        if handler.streamable:
            text, usage = await collect_text(job, settings.request_timeout_s, request_id)
            output = handler.finish(item, params, text)
            headers = usage_headers(usage)
        else:
            output = await wait_output(job, settings.request_timeout_s, request_id)
        if isinstance(output, MediaOutput):
            if body.json_output is False:
                return Response(output.data, media_type=output.mime)
            output = media.to_base64(output.data)
        if render_off_loop(job.size):
            content = await asyncio.to_thread(json_bytes, {"error": None, "output": output})
            return Response(content, media_type="application/json", headers=headers)
        return JSONResponse({"error": None, "output": output}, headers=headers)

    return app


async def wait_output(job: Job, limit_s: float, request_id: str | None = None) -> Any:
    """The output of a batch job; at its deadline the job is cancelled (the model stops) and the request 504s."""
    remaining = limit_s if job.deadline is None else max(0.0, job.deadline - time.monotonic())
    try:
        return await asyncio.wait_for(asyncio.shield(job.future), remaining)
    except TimeoutError as exc:
        job.cancel.set()
        raise timeout_error(limit_s) from exc
    except asyncio.CancelledError:
        job.cancel.set()
        raise
    except Exception as exc:
        raise job_error(exc, limit_s, request_id) from exc


async def next_chunk(job: Job, deadline: float) -> str | StreamEnd:
    assert job.chunks is not None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return await asyncio.wait_for(job.chunks.get(), remaining)


async def collect_text(job: Job, limit_s: float, request_id: str | None = None) -> tuple[str, TokenUsage | None]:
    """The joined text deltas of a stream job and its token usage."""
    deadline = time.monotonic() + limit_s
    parts: list[str] = []
    try:
        while True:
            try:
                chunk = await next_chunk(job, deadline)
            except TimeoutError as exc:
                raise timeout_error(limit_s) from exc
            if isinstance(chunk, StreamEnd):
                if chunk.error is not None:
                    raise job_error(chunk.error, limit_s, request_id) from chunk.error
                return "".join(parts), chunk.usage
            parts.append(chunk)
    finally:
        job.cancel.set()


def stream_body(job: Job, sse: bool, timeout: float, request_id: str | None = None) -> AsyncIterator[str]:
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
                    message = timeout_error(timeout).message
                    yield error_event(message) if sse else raw_error(message)
                    return
                if isinstance(chunk, StreamEnd):
                    if chunk.error is not None:
                        message = job_error(chunk.error, timeout, request_id).message
                        yield error_event(message) if sse else raw_error(message)
                    elif sse:
                        if chunk.usage is not None:
                            yield usage_event(chunk.usage)
                        yield DONE_EVENT
                    return
                yield delta_event(chunk) if sse else chunk
        finally:
            job.cancel.set()

    return body()
