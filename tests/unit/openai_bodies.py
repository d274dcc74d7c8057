"""Bodies for the tests of the OpenAI routes: requests as clients send them, the runtime's SSE events."""

from __future__ import annotations

import json
from typing import Any

USER_HI = [{"role": "user", "content": "hi"}]
CREATED = 1_700_000_000


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "org/chat-model", "messages": USER_HI, **fields}


def prompt(**fields: Any) -> dict[str, Any]:
    return {"model": "org/text-model", "prompt": "Once", **fields}


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


def runtime_sse(payload: object, *, ascii_only: bool = True) -> bytes:
    """One event as the runtime writes it (``sse_event`` in the runtime app)."""
    return f"data: {json.dumps(payload, ensure_ascii=ascii_only)}\n\n".encode()


def decode_sse(stream: bytes) -> list[Any]:
    """The data of each event of a complete stream ("[DONE]" kept as a string)."""
    assert stream.endswith(b"\n\n")
    events = []
    for block in stream.decode().split("\n\n")[:-1]:
        assert block.startswith("data: ")
        data = block.removeprefix("data: ")
        events.append(data if data == "[DONE]" else json.loads(data))
    return events
