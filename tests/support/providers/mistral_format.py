"""Mistral chat (``/v1/chat/completions``): strict about fields, usage on the last chunk without asking."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from support.providers import RETRY_AFTER_S, SILENCE_S, TEXT, WHOLE_TEXT, StandIn, endless, sse, stream_response

FIELDS = frozenset(
    {
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "safe_prompt",
        "prediction",
        "parallel_tool_calls",
        "prompt_mode",
        "reasoning_effort",
        "metadata",
    }
)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"message": message, "request_id": "standin"}, status=status, headers=headers)


def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "standin",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def app(standin: StandIn) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await standin.record(request)
        if request.headers.get("Authorization") != f"Bearer {standin.key}":
            return _error(401, "Unauthorized")
        extra = sorted(set(body) - FIELDS) + sorted(name for name, value in body.items() if value is None)
        if extra:
            detail = [
                {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted"}
                for name in extra
            ]
            invalid = {
                "object": "error",
                "message": {"detail": detail},
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            return web.json_response(invalid, status=422)
        model = body["model"]
        prompt, completion = standin.usage
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        if model == "hang":
            await asyncio.sleep(60)
        if model == "rate-limited":
            return _error(429, "Requests rate limit exceeded", **{"retry-after": str(RETRY_AFTER_S)})
        if model == "overloaded":
            return _error(503, "Service unavailable")
        if model == "broken":
            return _error(500, "Internal server error")
        if not body.get("stream"):
            answer = {
                "id": "standin",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": WHOLE_TEXT, "tool_calls": None},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
            return web.json_response(answer)
        out = await stream_response(request)
        await out.write(sse(chunk(model, {"role": "assistant", "content": ""})))
        if model == "endless":
            return await endless(standin, out, lambda text: sse(chunk(model, {"content": text})))
        if model == "silent":
            await asyncio.sleep(SILENCE_S)
        for index, text in enumerate(TEXT):
            last = index == len(TEXT) - 1
            piece = chunk(model, {"content": text}, "stop" if last else None)
            if last:
                piece["usage"] = usage
            await out.write(sse(piece))
            if model == "fails-midway":
                # Mistral breaks the connection off: no last chunk, no [DONE].
                assert request.transport is not None
                request.transport.close()
                return out
        await out.write(sse("[DONE]"))
        return out

    application = web.Application()
    application.router.add_post("/v1/chat/completions", chat)
    return application
