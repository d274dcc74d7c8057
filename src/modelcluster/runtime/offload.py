"""What runs off the event loop: CPU work whose cost grows with the input (JSON parsing of big bodies, base64
decoding, tokenizing long texts, rendering big outputs) goes to a worker thread; small inputs stay on the loop,
where they cost less than the hand-off to a thread would."""

from __future__ import annotations

import json
from typing import Any

#: Bodies, base64 strings and texts larger than this are parsed, decoded or prepared in a worker thread.
OFF_LOOP_BYTES = 64 * 1024
#: Outputs of requests with more items than this (embeddings of a long `text` list) are rendered in a thread.
OFF_LOOP_ITEMS = 16


def off_loop(size_bytes: int) -> bool:
    """Whether work over an input of this size should leave the event loop."""
    return size_bytes > OFF_LOOP_BYTES


def render_off_loop(items: int) -> bool:
    """Whether the JSON answer of a request with this many items should be rendered in a thread."""
    return items > OFF_LOOP_ITEMS


def json_bytes(content: Any) -> bytes:
    """The JSON body as Starlette's ``JSONResponse`` renders it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()
