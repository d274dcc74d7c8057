"""The Gemini API (``/v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``; ``/v1`` too)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from support.providers import RETRY_AFTER_S, SILENCE_S, TEXT, WHOLE_TEXT, StandIn, endless, sse, stream_response


def _error(status: int, state: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": state, "details": details or []}}
    return web.json_response(body, status=status)


def _response(model: str, text: str, finish: str | None, usage: dict[str, int] | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    answer: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": "standin"}
    if usage is not None:
        answer["usageMetadata"] = usage
    return answer


def app(standin: StandIn) -> web.Application:
    async def generate(request: web.Request) -> web.StreamResponse:
        body = await standin.record(request)
        if not isinstance(body, dict) or not body.get("contents"):
            return _error(400, "INVALID_ARGUMENT", "* GenerateContentRequest.contents: contents is not specified")
        model, _, action = request.match_info["call"].partition(":")
        if action not in ("generateContent", "streamGenerateContent"):
            return _error(404, "NOT_FOUND", f"unknown method {action}")
        if request.headers.get("x-goog-api-key") != standin.key or "key" in request.query:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            return _error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])
        prompt, completion = standin.usage
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion}
        if model == "hang":
            await asyncio.sleep(60)
        if model == "rate-limited":
            retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{RETRY_AFTER_S}s"}
            return _error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [retry])
        if model == "overloaded":
            return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if model == "broken":
            return _error(500, "INTERNAL", "An internal error has occurred.")
        if action == "generateContent":
            return web.json_response(_response(model, WHOLE_TEXT, "STOP", usage))
        if request.query.get("alt") != "sse":
            return _error(400, "INVALID_ARGUMENT", "this stand-in streams SSE only (alt=sse)")
        out = await stream_response(request)
        if model == "endless":
            return await endless(standin, out, lambda text: sse(_response(model, text, None, None)))
        if model == "silent":
            await asyncio.sleep(SILENCE_S)
        for index, text in enumerate(TEXT):
            last = index == len(TEXT) - 1
            partial = {"promptTokenCount": prompt}
            await out.write(sse(_response(model, text, "STOP" if last else None, usage if last else partial)))
            if model == "fails-midway":
                await out.write(
                    sse({"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}})
                )
                return out
        return out

    application = web.Application()
    application.router.add_post("/v1beta/models/{call}", generate)
    application.router.add_post("/v1/models/{call}", generate)
    return application
