"""Bounds on the structure of a JSON body, measured on its raw bytes before it is decoded.

``json.loads`` turns a few bytes into many objects (``[{},{},...]``: 3 bytes per dict of about 64), and its hooks
run only after the objects exist, so the structure is measured first, by :func:`check_json_limits`: one linear pass
of a regular expression over the structural tokens (brackets, commas, colons and whole strings; numbers and
literals are skipped in C), counting nesting depth, items (array elements and object members), string lengths and
the top-level ``params`` object (members and bytes). The pass stops at the first limit passed, and never does more
than a fixed multiple of ``max_items`` steps, so its cost is bounded by the limits rather than by the body.

Bodies that are not JSON pass or fail here as they happen to; the parser that follows refuses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from modelcluster.api.errors import PayloadTooLarge

#: A string token (its escapes kept; an unterminated one runs to the end, so every ``"`` starts one token and the
#: pass stays linear) or one structural byte.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*(?:"|\Z)|[\[\]{},:]', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_COMMA, _COLON, _QUOTE, _BRACE = ord(","), ord(":"), ord('"'), ord("{")
#: A valid JSON text has at most this many tokens per item (a string, a colon, a comma, an open and a close).
_TOKENS_PER_ITEM = 5
PARAMS = "params"


@dataclass(frozen=True)
class JsonLimits:
    """The largest structure a body may have; every field is a count or a byte length."""

    max_depth: int = 32
    max_items: int = 10_000
    max_string_bytes: int = 32 * 1024 * 1024
    max_params_keys: int = 64
    max_params_bytes: int = 64 * 1024


class JsonLimitExceeded(PayloadTooLarge):
    """A body whose structure passes one of the :class:`JsonLimits` (413); ``limit`` names the field."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(f"{message} (limit {limit})")
        self.limit = limit


@dataclass(slots=True)
class _Frame:
    """An open array or object: whether anything was seen in it, and its commas."""

    kind: int
    start: int
    empty: bool = True
    commas: int = 0

    @property
    def items(self) -> int:
        return 0 if self.empty else self.commas + 1


def surely_within(raw: bytes, limits: JsonLimits) -> bool:
    """Whether byte counts alone show that ``raw`` cannot pass any of ``limits`` (a few passes in C, no tokens).

    Each count bounds what :func:`check_json_limits` measures from above, as brackets, commas and quotes inside
    strings are counted too: the depth by the opening brackets, the items by the commas and closing brackets, a
    ``params`` object's keys by the commas plus one, its bytes and any string's length by the body's length, and
    the tokens by all structural bytes and quotes. ``False`` says only that the full measure must decide.
    """
    size = len(raw)
    if size > limits.max_params_bytes or size > limits.max_string_bytes:
        return False
    opens = raw.count(b"[") + raw.count(b"{")
    if opens > limits.max_depth:
        return False
    commas, closes = raw.count(b","), raw.count(b"]") + raw.count(b"}")
    if commas + closes > limits.max_items or commas + 1 > limits.max_params_keys:
        return False
    tokens = opens + closes + commas + raw.count(b":") + raw.count(b'"')
    return tokens <= _TOKENS_PER_ITEM * (limits.max_items + 1) + 2 * limits.max_depth


def check_json_limits(raw: bytes, limits: JsonLimits) -> None:
    """Raise :class:`JsonLimitExceeded` when ``raw`` passes one of ``limits``; otherwise return, allocating little.

    A body that :func:`surely_within` clears (most bodies: a few kilobytes, a few dozen members) is not tokenized.
    """
    if not surely_within(raw, limits):
        scan_json_limits(raw, limits)


def scan_json_limits(raw: bytes, limits: JsonLimits) -> None:
    """The full measure of :func:`check_json_limits`: one pass over ``raw``'s tokens."""
    stack: list[_Frame] = []
    items = 0
    steps = 0
    budget = _TOKENS_PER_ITEM * (limits.max_items + 1) + 2 * limits.max_depth
    previous_end = 0
    key: bytes | None = None  # the last key of the root object
    params_start = -1  # where the value of the root's `params` begins, while it is being read
    for match in _TOKEN.finditer(raw):
        steps += 1
        if steps > budget:
            raise _too_many_items(limits)
        start, end = match.span()
        byte = raw[start]
        frame = stack[-1] if stack else None
        if frame is not None and frame.empty and (byte not in _CLOSE or raw[previous_end:start].strip()):
            frame.empty = False
        previous_end = end
        if params_start >= 0 and end - params_start > limits.max_params_bytes:
            raise JsonLimitExceeded("max_params_bytes", f"params is larger than {limits.max_params_bytes} bytes")
        if byte == _QUOTE:
            if end - start - 2 > limits.max_string_bytes:
                raise JsonLimitExceeded("max_string_bytes", f"a string is longer than {limits.max_string_bytes} bytes")
            if len(stack) == 1 and frame is not None and frame.kind == _BRACE and key is None:
                key = match.group()
        elif byte in _OPEN:
            stack.append(_Frame(byte, start))
            if len(stack) > limits.max_depth:
                raise JsonLimitExceeded("max_depth", f"the body nests deeper than {limits.max_depth} levels")
        elif byte in _CLOSE:
            if frame is None:
                continue
            stack.pop()
            items += 0 if frame.empty else 1  # its commas are counted already
            if items > limits.max_items:
                raise _too_many_items(limits)
            if len(stack) == 1 and params_start >= 0 and frame.start >= params_start:
                _check_params_keys(frame, limits)
        elif byte == _COMMA:
            if frame is None:
                continue
            frame.commas += 1
            items += 1
            if items > limits.max_items:
                raise _too_many_items(limits)
            if len(stack) == 1:
                key, params_start = None, -1
            elif len(stack) == 2 and params_start >= 0 and frame.kind == _BRACE and frame.start >= params_start:
                _check_params_keys(frame, limits)
        elif byte == _COLON and len(stack) == 1 and key is not None and _is_params(key):
            params_start = end


def _check_params_keys(frame: _Frame, limits: JsonLimits) -> None:
    if frame.kind == _BRACE and frame.items > limits.max_params_keys:
        raise JsonLimitExceeded("max_params_keys", f"params has more than {limits.max_params_keys} keys")


def _is_params(key: bytes) -> bool:
    if b"\\" not in key:
        return key == b'"params"'
    try:
        return bool(json.loads(key) == PARAMS)
    except ValueError:
        return False


def _too_many_items(limits: JsonLimits) -> JsonLimitExceeded:
    return JsonLimitExceeded(
        "max_items", f"the body has more than {limits.max_items} items (array elements and object members)"
    )
