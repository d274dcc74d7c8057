"""A warm standby runtime: its family's libraries imported, the device initialised, a warm-up pass done, no model.

It serves nothing until claimed: ``/health`` and ``/run`` answer 503 (``standby``), so no kubelet probe or router
ever counts it ready; ``GET /standby`` answers 200 while it is warm and unclaimed (a pool's readiness). The admin
call ``POST /admin/load`` (:mod:`modelcluster.runtime.admin`) names a model: from then on every request goes to a
runtime app made for that model (:func:`modelcluster.runtime.app.create_app`), whose start (the model's load)
runs at once in this already warm process; ``/health`` turns 200 the moment it can answer. A second order answers
409. A load that fails ends the process as any runtime's does (the pod restarts, as a standby again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from modelcluster.api import error_body
from modelcluster.api.errors import ApiError, Conflict, InputError, NotReady
from modelcluster.api.standby import ADMIN_LOAD_PATH, STANDBY_HEALTH_MESSAGE
from modelcluster.api.tasks import tasks_of_family
from modelcluster.api.warm_pool import STANDBY_PATH
from modelcluster.runtime import media
from modelcluster.runtime.admin import authorized, parse_load_order
from modelcluster.runtime.credentials import OPEN_PATHS, CredentialMiddleware
from modelcluster.runtime.loading import resolve_device
from modelcluster.runtime.metrics import RuntimeMetrics
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.startup import StartupClock, import_libraries, task_libraries
from modelcluster.runtime.tasks import loader_module

logger = logging.getLogger(__name__)

MAX_ORDER_BYTES = 16 * 1024
#: Paths the standby answers itself after a claim too (every other goes to the claimed model's app).
STANDBY_OWN_PATHS = frozenset({ADMIN_LOAD_PATH, STANDBY_PATH})
#: Makes the runtime app of a claimed standby: its settings and the clock of its start from the claim.
AppMaker = Callable[[RuntimeSettings, StartupClock], FastAPI]


#: Modules a library imports only when a model is first built (transformers imports lazily): a standby imports
#: them too, so that a claim's load is the weights alone. A module missing here is skipped.
DEEP_MODULES: dict[str, tuple[str, ...]] = {
    "transformers": (
        "transformers.modeling_utils",
        "transformers.generation",
        "transformers.models.auto.modeling_auto",
        "transformers.models.llama.modeling_llama",
        "transformers.models.bert.modeling_bert",
    ),
}


def family_libraries(family: str) -> tuple[str, ...]:
    """Every library a task of ``family`` needs, in a stable order (torch first), then their deep modules."""
    names: dict[str, None] = {}
    for task in tasks_of_family(family):
        names.update(dict.fromkeys(task_libraries(loader_module(task))))
    deep = {module: None for name in names for module in DEEP_MODULES.get(name, ())}
    return (*names, *deep)


def warm_up(settings: RuntimeSettings, clock: StartupClock) -> str:
    """Blocking: import the family's libraries, initialise the device and run one pass on it; the device."""
    family = settings.standby_family
    assert family is not None
    import_libraries(family_libraries(family))
    import torch

    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    device = resolve_device(settings.device, torch.cuda.is_available())
    probe = torch.ones(64, 64, device=device)  # the CUDA context on a GPU, the kernels' first run everywhere
    clock.mark("imports")
    float((probe @ probe).sum().item())
    clock.mark("warmup")
    return device


def claimed_settings(
    base: RuntimeSettings, model_id: str, task: str, credential_sha256: str | None = None
) -> RuntimeSettings:
    """The settings of the runtime a claim makes: the standby's own, serving ``model_id`` for ``task``, answering
    the callers of ``credential_sha256`` when given (the borrowing cluster's), else the standby's."""
    values: dict[str, Any] = {**base.model_dump(), "model_id": model_id, "task": task, "standby_family": None}
    if credential_sha256 is not None:
        values["credential_sha256"] = credential_sha256
    try:
        return RuntimeSettings(**values)
    except ValidationError as error:
        raise InputError(f"invalid load order: {error.errors()[0]['msg']}") from None


class StandbyRuntime:
    """The ASGI app of a standby: its own routes until claimed, then the claimed model's runtime app."""

    def __init__(self, settings: RuntimeSettings, *, make_app: AppMaker, startup: StartupClock | None = None) -> None:
        assert settings.standby_family is not None
        self.settings = settings
        self.family = settings.standby_family
        self.make_app = make_app
        self.clock = startup if startup is not None else StartupClock()
        self.metrics = RuntimeMetrics("standby", self.family)
        self.clock.listen(lambda phase, seconds: self.metrics.cold_start.labels(phase=phase).observe(seconds))
        self.token = settings.admin_secret()
        self.device: str | None = None
        self.error: str | None = None
        self.draining = False
        self.inner: FastAPI | None = None
        self.claimed_at: float | None = None
        self._inner_lifespan: AbstractAsyncContextManager[Any] | None = None
        self._claiming = asyncio.Lock()
        self.verifier = settings.credential_sha256
        app = self._app()
        # With a verifier (a pool's pod), only the operator holding the standby's credential reaches anything
        # but the probes; a claim's runtime app then checks the credential its order named.
        self.outer: Any = (
            CredentialMiddleware(app, self.verifier, OPEN_PATHS | {STANDBY_PATH}) if self.verifier is not None else app
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = self.inner
        if inner is not None and scope["type"] != "lifespan" and scope.get("path") not in STANDBY_OWN_PATHS:
            await inner(scope, receive, send)
            return
        await self.outer(scope, receive, send)

    @property
    def warm(self) -> bool:
        return self.device is not None

    def start_draining(self) -> None:
        """SIGTERM: a claimed runtime drains as any runtime does; an unclaimed one turns unready."""
        self.draining = True
        if self.inner is not None:
            self.inner.state.runtime.start_draining()

    async def claim(self, raw: bytes) -> dict[str, Any]:
        """Serve the model of the load order ``raw`` from now on; its load starts at once."""
        order = parse_load_order(raw, self.family)
        settings = claimed_settings(self.settings, order.model_id, order.task, order.credential_sha256)
        async with self._claiming:
            if self.inner is not None or self.draining:
                raise Conflict("this standby is already claimed" if self.inner is not None else "draining")
            claimed_at = time.time()
            clock = StartupClock(started=claimed_at, path="standby")
            clock.mark("interpreter", at=claimed_at)  # the process was warm: nothing to start
            inner = self.make_app(settings, clock)
            lifespan = inner.router.lifespan_context(inner)
            await lifespan.__aenter__()
            self.inner, self.claimed_at, self._inner_lifespan = inner, claimed_at, lifespan
        logger.info("claimed: loading %s (%s) in this warm standby", order.model_id, order.task)
        return {"status": "loading", "model_id": order.model_id, "task": order.task}

    def report(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "warm": self.warm,
            "device": self.device,
            "error": self.error,
            "claimed_at": self.claimed_at,
            "warm_after_s": round(self.clock.since("warmup"), 3) if "warmup" in self.clock.marks else None,
        }

    async def _warm(self) -> None:
        try:
            self.device = await asyncio.to_thread(warm_up, self.settings, self.clock)
        except (ImportError, RuntimeError) as error:
            self.error = f"{type(error).__name__}: {error}"
            logger.error("standby failed to warm up: %s", self.error)
            return
        logger.info("standby of the %s family warm on %s", self.family, self.device)

    def _app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            warming = asyncio.create_task(self._warm(), name="standby-warm-up")
            try:
                yield
            finally:
                warming.cancel()
                if self._inner_lifespan is not None:
                    await self._inner_lifespan.__aexit__(None, None, None)

        app = FastAPI(title="ModelCluster standby runtime", lifespan=lifespan, docs_url=None, redoc_url=None)
        app.openapi_url = None

        @app.exception_handler(ApiError)
        async def api_error(request: Request, exc: ApiError) -> JSONResponse:
            return JSONResponse(error_body(exc.message), status_code=exc.status)

        @app.get("/health")
        async def health() -> JSONResponse:
            raise NotReady("draining" if self.draining else STANDBY_HEALTH_MESSAGE)

        @app.get(STANDBY_PATH)
        async def standby() -> JSONResponse:
            if self.draining or not self.warm or self.inner is not None:
                raise NotReady("draining" if self.draining else "standby: not warm yet" if not self.warm else "claimed")
            return JSONResponse({"error": None, "output": "warm"})

        @app.post("/run")
        async def run() -> JSONResponse:
            raise NotReady(STANDBY_HEALTH_MESSAGE)

        @app.get("/status")
        async def status() -> JSONResponse:
            output = {"status": "standby", "standby": self.report(), "startup": self.clock.report()}
            return JSONResponse({"error": None, "output": output})

        @app.get("/metrics")
        async def prometheus() -> Response:
            return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

        @app.post(ADMIN_LOAD_PATH)
        async def load(request: Request) -> JSONResponse:
            if self.token is not None or self.verifier is None:
                authorized(request.headers.get("authorization"), self.token)
            # else: the credential middleware let only the standby's own credential through
            raw = await media.collect_bytes(request.stream(), MAX_ORDER_BYTES, "load order")
            return JSONResponse({"error": None, "output": await self.claim(raw)}, status_code=202)

        return app
