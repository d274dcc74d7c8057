"""HTTP routes: ``POST /run``, ``GET /health``, ``GET /status``, ``GET /metrics``; built by ``create_app``.

The app is the wiring: it loads the model at startup, reads ``/run`` bodies and hands them to the
:class:`~modelcluster.runtime.pipeline.RunPipeline`, sends its results, and renders errors as ``{"error", "output"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelcluster.api import error_body
from modelcluster.api.demand import DEMAND_PATH, DemandFeed, answer
from modelcluster.api.errors import ApiError, InternalError, NotReady, PayloadTooLarge
from modelcluster.api.health import HEALTH_PATH, HEALTH_WAIT_PARAM, health_wait
from modelcluster.api.metering import INFERENCE_SECONDS_HEADER
from modelcluster.runtime import demand, media
from modelcluster.runtime.batching import Scheduler
from modelcluster.runtime.credentials import CredentialMiddleware
from modelcluster.runtime.loading import LoadProgress, load_handler, memory_report
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.pipeline import RunPipeline, RunResult, internal_error, new_request_id
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.startup import StartupClock
from modelcluster.runtime.tasks.base import Handler
from modelcluster.runtime.urlfetch import UrlFetcher

logger = logging.getLogger(__name__)

Loader = Callable[[RuntimeSettings, LoadProgress], Handler]
#: Told the cause when the model cannot be loaded (the server then ends the process).
LoadFailureHook = Callable[[str], None]
REQUEST_ID_HEADER = "X-Request-Id"


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
    feed: DemandFeed = field(default_factory=DemandFeed)
    #: Set once ``/health`` has its answer for good or for a while: the model loaded or failed, or the drain began.
    settled: asyncio.Event = field(default_factory=asyncio.Event)

    def start_draining(self) -> None:
        """From now on ``/health`` answers 503 so readiness fails; requests are still served."""
        self.draining = True
        self.settled.set()
        self.metrics.draining.set(1)
        self.feed.close()  # long polls of the autoscaler answer now and no longer wait: shutdown is not held up

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
            self.settled.set()
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
        self.settled.set()  # held health checks answer 200 now
        self.metrics.model_loaded.set(1)
        self.metrics.model_load_seconds.set(self.progress.load_seconds or 0.0)
        logger.info("model ready: %s (%s) on %s", self.settings.model_id, self.settings.task, self.progress.device)


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request (a fresh one for requests it did not see)."""
    given = getattr(request.state, "request_id", None)
    return given if isinstance(given, str) else new_request_id()


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


def http_response(result: RunResult) -> Response:
    """The response of a pipeline result: its bytes, or its text stream sent as it comes."""
    if result.stream is not None:
        return StreamingResponse(
            result.stream, status_code=result.status, media_type=result.media_type, headers=result.headers
        )
    return Response(result.content, status_code=result.status, media_type=result.media_type, headers=result.headers)


def create_app(
    settings: RuntimeSettings,
    *,
    loader: Loader = load_handler,
    on_load_failure: LoadFailureHook | None = None,
    startup: StartupClock | None = None,
) -> FastAPI:
    """The runtime's ASGI app; the model loads in the background once the app starts.

    A load failure is reported on ``/health`` and ``/status``; ``on_load_failure`` is then told its cause
    (the server ends the process with it, so the pod restarts and reports the cause). ``startup`` holds the
    process's start-up marks made before the app (the CLI's); each phase is observed in the cold-start histogram.
    """
    metrics = RuntimeMetrics(settings.task, settings.model_id)
    clock = startup if startup is not None else StartupClock()
    clock.listen(lambda phase, seconds: metrics.cold_start.labels(phase=phase).observe(seconds))
    state = RuntimeState(
        settings=settings, metrics=metrics, progress=LoadProgress(clock=clock), on_load_failure=on_load_failure
    )
    pipeline = RunPipeline(settings, state)
    feed = state.feed

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.fetcher = UrlFetcher(settings.url_policy())
        loading = asyncio.create_task(state.load(loader), name="model-load")
        publishing = asyncio.create_task(demand.publish(feed, metrics, lambda: state.scheduler), name="demand")
        try:
            yield
        finally:
            loading.cancel()
            publishing.cancel()
            if state.scheduler is not None:
                await state.scheduler.stop()
            await state.fetcher.aclose()

    app = FastAPI(title="ModelCluster runtime", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = state
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    if settings.credential_sha256 is not None:
        # Added last, so it runs first: a request without the cluster's credential reaches nothing else.
        app.add_middleware(CredentialMiddleware, verifier=settings.credential_sha256)
    else:
        logger.warning("no CREDENTIAL_SHA256 set: this runtime answers every caller")

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

    @app.get(HEALTH_PATH)
    async def health(request: Request) -> JSONResponse:
        wait = health_wait(request.query_params.get(HEALTH_WAIT_PARAM))
        if wait > 0 and not state.settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.settled.wait(), wait)
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
            "startup": clock.report(),
        }
        return JSONResponse({"error": None, "output": output})

    @app.get("/metrics")
    async def prometheus() -> Response:
        if state.scheduler is not None:
            state.scheduler.update_gauges()
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get(DEMAND_PATH)
    async def demand_feed(request: Request) -> Response:
        status, body = await answer(feed, request.query_params)
        return Response(body, status_code=status, media_type="application/json")

    @app.post("/run")
    async def run(request: Request) -> Response:
        started = time.monotonic()
        metrics.touch()
        request_id = request_id_of(request)
        try:
            raw = await read_body(request, settings.max_body_bytes)
        except ApiError:
            raise
        except Exception as exc:
            # answered 500 with only the request id here rather than by the server-error middleware, which
            # re-raises, making the server drop the (keep-alive) connection
            raise internal_error(exc, request_id, InternalError) from exc
        result = await pipeline.run(raw, accept=request.headers.get("accept", ""), request_id=request_id)
        if result.status == 200:
            clock.mark("first_answer")
        response = http_response(result)
        if result.stream is None:
            response.headers[INFERENCE_SECONDS_HEADER] = repr(time.monotonic() - started)
        return response

    return app
