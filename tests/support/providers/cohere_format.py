"""Cohere Chat v2 (``/v2/chat``): named events from ``message-start`` to ``message-end``, then ``[DONE]``."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from support.providers import RETRY_AFTER_S, SILENCE_S, TEXT, WHOLE_TEXT, StandIn, endless, sse, stream_response


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"message": message}, status=status, headers=headers)


def _event(payload: dict[str, Any]) -> bytes:
    return sse(payload, event=payload["type"])


def app(standin: StandIn) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await standin.record(request)
        if request.headers.get("Authorization") != f"Bearer {standin.key}":
            return _error(401, "invalid api token")
        model = body["model"]
        prompt, completion = standin.usage
        counts = {"input_tokens": prompt, "output_tokens": completion}
        usage = {"billed_units": counts, "tokens": counts}
        if model == "hang":
            await asyncio.sleep(60)
        if model == "rate-limited":
            return _error(429, "You are past the rate limit of your key.", **{"retry-after": str(RETRY_AFTER_S)})
        if model == "overloaded":
            return _error(503, "service unavailable")
        if model == "broken":
            return _error(500, "internal server error")
        if not body.get("stream"):
            answer = {
                "id": "standin",
                "finish_reason": "COMPLETE",
                "message": {"role": "assistant", "content": [{"type": "text", "text": WHOLE_TEXT}]},
                "usage": usage,
            }
            return web.json_response(answer)
        out = await stream_response(request)
        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        await out.write(_event({"type": "message-start", "id": "standin", "delta": {"message": start}}))
        await out.write(
            _event(
                {"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}
            )
        )

        def delta(text: str) -> bytes:
            return _event({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}})

        if model == "endless":
            return await endless(standin, out, delta)
        if model == "silent":
            await asyncio.sleep(SILENCE_S)
        for index, text in enumerate(TEXT):
            await out.write(delta(text))
            if model == "fails-midway" and index == 0:
                failed = {"finish_reason": "ERROR", "error": "internal error while generating", "usage": usage}
                await out.write(_event({"type": "message-end", "delta": failed}))
                await out.write(sse("[DONE]"))
                return out
        await out.write(_event({"type": "content-end", "index": 0}))
        await out.write(_event({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}}))
        await out.write(sse("[DONE]"))
        return out

    application = web.Application()
    application.router.add_post("/v2/chat", chat)
    return application
