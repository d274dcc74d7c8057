"""OpenAI Chat Completions (``/v1/chat/completions``) as OpenAI answers it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from support.providers import RETRY_AFTER_S, SILENCE_S, TEXT, WHOLE_TEXT, StandIn, endless, sse, stream_response


def _error(status: int, message: str, type_: str, code: str | None, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def masked(key: str) -> str:
    """How OpenAI shows a wrong key back: its head, stars, its last four characters."""
    return f"{key[:8]}{'*' * 20}{key[-4:]}"


def usage(standin: StandIn) -> dict[str, Any]:
    prompt, completion = standin.usage
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def app(standin: StandIn) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await standin.record(request)
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if presented != standin.key:
            message = f"Incorrect API key provided: {masked(presented)}. You can find your API key at the dashboard."
            return _error(401, message, "invalid_request_error", "invalid_api_key")
        model = body["model"]
        if model == "hang":
            await asyncio.sleep(60)
        if model == "rate-limited":
            return _error(
                429,
                "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.",
                "requests",
                "rate_limit_exceeded",
                **{"retry-after": str(RETRY_AFTER_S), "x-ratelimit-remaining-requests": "0"},
            )
        if model == "overloaded":
            return _error(503, "The engine is currently overloaded, please try again later.", "server_error", None)
        if model == "broken":
            return _error(500, "The server had an error while processing your request.", "server_error", None)
        if not body.get("stream"):
            answer = {
                "id": "chatcmpl-standin",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "system_fingerprint": "fp_standin",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": WHOLE_TEXT, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage(standin),
            }
            return web.json_response(answer, headers={"x-request-id": "req_standin"})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        out = await stream_response(request)
        await out.write(sse(chunk(model, {"role": "assistant", "content": ""})))
        if model == "endless":
            return await endless(standin, out, lambda text: sse(chunk(model, {"content": text})))
        if model == "silent":
            await asyncio.sleep(SILENCE_S)
        for index, text in enumerate(TEXT):
            await out.write(sse(chunk(model, {"content": text})))
            if model == "fails-midway" and index == 0:
                error = {
                    "error": {
                        "message": "The server had an error while processing your request.",
                        "type": "server_error",
                    }
                }
                await out.write(sse(error))
                return out
        await out.write(sse(chunk(model, {}, "stop")))
        if include_usage:
            final = chunk(model, {})
            final["choices"] = []
            final["usage"] = usage(standin)
            await out.write(sse(final))
        await out.write(sse("[DONE]"))
        return out

    application = web.Application()
    application.router.add_post("/v1/chat/completions", chat)
    return application
