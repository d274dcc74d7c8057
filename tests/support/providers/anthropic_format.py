"""Anthropic Messages (``/v1/messages``) as Anthropic answers it: named events, cumulative output counts."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from support.providers import RETRY_AFTER_S, SILENCE_S, TEXT, WHOLE_TEXT, StandIn, endless, sse, stream_response


def _error(status: int, type_: str, message: str, **headers: str) -> web.Response:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": "req_standin"}
    return web.json_response(body, status=status, headers={"request-id": "req_standin", **headers})


def _event(payload: dict[str, Any]) -> bytes:
    return sse(payload, event=payload["type"])


def app(standin: StandIn) -> web.Application:
    async def messages(request: web.Request) -> web.StreamResponse:
        body = await standin.record(request)
        presented = request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
        if presented != standin.key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version: header is required")
        if not isinstance(body.get("max_tokens"), int):
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        if any(message.get("role") == "system" for message in body["messages"]):
            return _error(400, "invalid_request_error", 'messages: Unexpected role "system".')
        model = body["model"]
        prompt, completion = standin.usage
        if model == "hang":
            await asyncio.sleep(60)
        if model == "rate-limited":
            return _error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                **{"retry-after": str(RETRY_AFTER_S)},
            )
        if model == "overloaded":
            return _error(529, "overloaded_error", "Overloaded")
        if model == "broken":
            return _error(500, "api_error", "Internal server error")
        message: dict[str, Any] = {
            "id": "msg_standin",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": WHOLE_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion},
        }
        if not body.get("stream"):
            return web.json_response(message, headers={"request-id": "req_standin"})
        out = await stream_response(request)
        start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": prompt, "output_tokens": 1}}
        await out.write(_event({"type": "message_start", "message": start}))
        await out.write(
            _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        )
        await out.write(_event({"type": "ping"}))

        def delta(text: str) -> bytes:
            return _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})

        if model == "endless":
            return await endless(standin, out, delta)
        if model == "silent":
            await asyncio.sleep(SILENCE_S)
        for index, text in enumerate(TEXT):
            await out.write(delta(text))
            if index == 0:
                # A cumulative count midway: only the last one counts.
                await out.write(
                    _event({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 2}})
                    if model != "fails-midway"
                    else _event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                )
                if model == "fails-midway":
                    return out
        await out.write(_event({"type": "content_block_stop", "index": 0}))
        final = {"stop_reason": "end_turn", "stop_sequence": None}
        await out.write(_event({"type": "message_delta", "delta": final, "usage": {"output_tokens": completion}}))
        await out.write(_event({"type": "message_stop"}))
        return out

    application = web.Application()
    application.router.add_post("/v1/messages", messages)
    return application
