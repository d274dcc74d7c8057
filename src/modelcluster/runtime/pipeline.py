"""The ``/run`` pipeline without HTTP: a read body in, a :class:`RunResult` out.

:meth:`RunPipeline.run` parses the body, normalizes it for the task, checks the limits, admits it to the queue,
fetches and prepares its media, runs or streams the job and builds the answer. It raises the errors of
:mod:`modelcluster.api.errors`; the app (:mod:`modelcluster.runtime.app`) turns results and errors into responses.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelcluster.api import normalize, parse_run_request
from modelcluster.api.errors import ApiError, InferenceError, InputError, InternalError, RequestTimeout
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
from modelcluster.runtime.offload import json_bytes, off_loop, render_off_loop
from modelcluster.runtime.queueing import DeadlineExceeded, Job, StreamEnd
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler, MediaOutput, MediaRef
from modelcluster.runtime.urlfetch import UrlFetcher

#: The app's logger: a request's errors are logged under the same name whether the app or the pipeline saw them.
logger = logging.getLogger("modelcluster.runtime.app")

MODEL_INPUT_ERRORS = (ValueError, TypeError, KeyError, IndexError)
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
JSON_CONTENT_TYPE = "application/json"
#: The headers of a streamed answer: no caching, and no buffering in proxies.
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ServingState(Protocol):
    """What the pipeline needs of the runtime's state: the loaded model and the media URL fetcher."""

    @property
    def fetcher(self) -> UrlFetcher | None: ...

    def ready(self) -> tuple[Handler, Scheduler]:
        """The handler and its scheduler; raises :class:`~modelcluster.api.errors.NotReady` until loaded."""
        ...


@dataclass(frozen=True)
class RunResult:
    """An answer of ``/run``: ``content`` (JSON or raw media) or, for a stream, ``stream`` (text to send as is)."""

    media_type: str
    content: bytes = b""
    stream: AsyncIterator[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


def new_request_id(given: str | None = None) -> str:
    """The caller's ``X-Request-Id`` when it is a plain token, else a fresh one."""
    if given is not None and REQUEST_ID_PATTERN.match(given):
        return given
    return uuid.uuid4().hex


def internal_error(exc: BaseException, request_id: str, error: type[ApiError] = InferenceError) -> ApiError:
    """A 500 that tells the caller only the request id; the details go to the log under that id."""
    logger.error("internal error (request %s): %s: %s", request_id, type(exc).__name__, exc, exc_info=exc)
    return error(f"internal error (request {request_id})")


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


class RunPipeline:
    """``/run`` for one runtime: ``await run(body, accept=..., request_id=...)`` answers one request."""

    def __init__(self, settings: RuntimeSettings, state: ServingState) -> None:
        self.settings = settings
        self.state = state
        self.limits = settings.limits()

    async def run(self, raw: bytes, *, accept: str = "", request_id: str | None = None) -> RunResult:
        """The answer to the body ``raw``; ``accept`` (the ``Accept`` header) picks SSE over raw text for streams.

        Raises :class:`~modelcluster.api.errors.ApiError` only: an unexpected failure becomes a 500
        :class:`~modelcluster.api.errors.InternalError` that names only the request id (details are logged).
        """
        request_id = request_id or new_request_id()
        try:
            return await self.answer(raw, accept, request_id)
        except ApiError:
            raise
        except Exception as exc:
            raise internal_error(exc, request_id, InternalError) from exc

    async def answer(self, raw: bytes, accept: str, request_id: str) -> RunResult:
        settings = self.settings
        big = off_loop(len(raw))  # parsing, decoding and tokenizing a big body happen in a worker thread
        body = await asyncio.to_thread(parse_run_request, raw) if big else parse_run_request(raw)
        handler, scheduler = self.state.ready()
        payload = normalize(body, settings.task, handler.spec)
        params = handler.check_params(body.params)
        if body.stream and not (handler.streamable or handler.info.media_generator):
            # a media generator takes `stream` as the SDK sends it, with `json: false`: the media comes back raw
            raise InputError(f"{settings.task} does not stream; send `stream: false`")
        refs = handler.media_refs(payload)
        check_request_size(payload, len(refs), self.limits)
        scheduler.queue.reserve()
        try:
            blobs = [await self.fetch(ref) for ref in refs]
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
            sse = SSE_CONTENT_TYPE in accept
            return RunResult(
                media_type=SSE_CONTENT_TYPE if sse else RAW_CONTENT_TYPE,
                stream=stream_body(job, sse, settings.request_timeout_s, request_id),
                headers=dict(STREAM_HEADERS),
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
                return RunResult(media_type=output.mime, content=output.data)
            output = media.to_base64(output.data)
        answer = {"error": None, "output": output}
        content = await asyncio.to_thread(json_bytes, answer) if render_off_loop(job.size) else json_bytes(answer)
        return RunResult(media_type=JSON_CONTENT_TYPE, content=content, headers=headers)

    async def fetch(self, ref: MediaRef) -> bytes:
        """The bytes of one media input: decoded base64 (in a thread when big), or the URL's body."""
        if ref.base64 is not None:
            if off_loop(len(ref.base64)):
                return await asyncio.to_thread(media.decode_base64, ref.base64, self.settings.max_media_bytes)
            return media.decode_base64(ref.base64, self.settings.max_media_bytes)
        fetcher = self.state.fetcher
        assert ref.url is not None and fetcher is not None
        return await fetcher.fetch(ref.url)


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
        started = time.monotonic()
        deadline = started + timeout
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
                        yield usage_event(chunk.usage, time.monotonic() - started)
                        yield DONE_EVENT
                    return
                yield delta_event(chunk) if sse else chunk
        finally:
            job.cancel.set()

    return body()
