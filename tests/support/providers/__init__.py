"""Local stand-ins of the five providers' APIs, speaking each real wire format (checked by each official SDK).

A stand-in answers according to the model named in the request:

- any model: a plain answer, or a stream of :data:`TEXT` in three deltas, with the provider's usage fields
  carrying :data:`USAGE` of that provider;
- ``rate-limited``: 429 with a retry delay of :data:`RETRY_AFTER_S` (the provider's own way of saying it);
- ``overloaded``: Anthropic's 529 ``overloaded_error``, the others' 503;
- ``broken``: 500;
- ``fails-midway``: a streamed answer that fails after its 200 and one delta, as that provider does it;
- ``silent``: a stream whose first delta comes after :data:`SILENCE_S`;
- ``hang``: no answer at all (for timeouts);
- ``endless``: a stream that goes on until the client leaves (counted in :attr:`StandIn.disconnects`).

A request with another key than the stand-in's answers the provider's bad-key error (Gemini's 400
``API_KEY_INVALID``; OpenAI's 401 echoes a masked fragment of the key, as OpenAI does).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

T = TypeVar("T")

TEXT = ("Hello", " from the", " stand-in")
WHOLE_TEXT = "".join(TEXT)
#: (prompt tokens, completion tokens) each stand-in reports.
USAGE = {"openai": (11, 7), "anthropic": (12, 8), "google": (13, 9), "cohere": (14, 10), "mistral": (15, 11)}
RETRY_AFTER_S = 7
SILENCE_S = 0.8
PROVIDERS = tuple(USAGE)
#: The key each stand-in accepts in tests (what a caller sends in ``Provider-Key``).
KEYS = {provider: f"sk-{provider}-standin-key-0123456789abcdefXYZW" for provider in PROVIDERS}


@dataclass(frozen=True)
class Recorded:
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any


@dataclass
class StandIn:
    """One provider's stand-in: its base URL (as the gateway and the SDK are pointed at it) and what it saw."""

    provider: str
    key: str
    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    disconnects: int = 0

    @property
    def usage(self) -> tuple[int, int]:
        return USAGE[self.provider]

    async def record(self, request: web.Request) -> Any:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.requests.append(Recorded(request.path, dict(request.query), dict(request.headers), body))
        return body


def sse(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


async def stream_response(request: web.Request) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await out.prepare(request)
    return out


async def endless(standin: StandIn, out: web.StreamResponse, frame: Callable[[str], bytes]) -> web.StreamResponse:
    """Deltas every 20 ms until the client leaves (a disconnect) or 20 s pass."""
    try:
        for _ in range(1000):
            await out.write(frame("."))
            await asyncio.sleep(0.02)
    except (ConnectionResetError, asyncio.CancelledError):
        standin.disconnects += 1
        raise
    return out


class ServerThread:
    """An event loop in a thread that serves aiohttp applications, so synchronous SDKs can call them."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="servers", daemon=True)
        self.runners: list[web.BaseRunner] = []
        self.thread.start()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def serve(self, app: web.Application | Callable[[], web.BaseRunner]) -> str:
        """Serve ``app`` (or the runner a factory makes) on a free port of 127.0.0.1; its base URL."""

        async def start() -> str:
            runner = web.AppRunner(app, access_log=None) if isinstance(app, web.Application) else app()
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.runners.append(runner)
            port = runner.addresses[0][1]
            return f"http://127.0.0.1:{port}"

        return self.call(start())

    def stop(self) -> None:
        async def stop() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()

        self.call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def start_standins(servers: ServerThread, keys: Mapping[str, str]) -> dict[str, StandIn]:
    """Every provider's stand-in, served by ``servers``, each accepting ``keys[provider]``."""
    from support.providers import anthropic_format, cohere_format, google_format, mistral_format, openai_format

    apps = {
        "openai": openai_format.app,
        "anthropic": anthropic_format.app,
        "google": google_format.app,
        "cohere": cohere_format.app,
        "mistral": mistral_format.app,
    }
    standins: dict[str, StandIn] = {}
    for provider, make in apps.items():
        standin = StandIn(provider, keys[provider])
        standin.url = servers.serve(make(standin))
        standins[provider] = standin
    return standins
