"""The unified body of a closed chat model (the native route's) as a :class:`ChatRequest`: pure, no I/O.

- ``messages`` as they are; ``text`` or ``input`` (a string, a message list or an object of fields) as one user
  message; content blocks of type ``image`` by ``url`` or ``base64``; audio and video are refused (422): the
  providers' chat endpoints served here take text and images only.
- ``params``: ``max_tokens`` (or ``max_new_tokens``), ``temperature``, ``top_p``, ``top_k``, ``stop`` (or
  ``stop_sequences``; a string or a list), ``seed``. Anything else is refused (422) naming it, so nothing
  unknown is sent upstream; what a provider lacks is dropped by its module (``docs/providers.md``).
"""

from __future__ import annotations

import base64 as b64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inference import Message, RunRequest
from modelcluster.gateway.providers.base import ChatMessage, ChatRequest, GenerationParams, Image, Part, Role

ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})
PARAM_NAMES = ("max_tokens", "max_new_tokens", "temperature", "top_p", "top_k", "stop", "stop_sequences", "seed")
MAX_STOP = 4
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def chat_from_run_request(body: RunRequest, model: str) -> ChatRequest:
    """The chat request of a native body for the provider's ``model``; :class:`InputError` (422) naming the field."""
    if body.messages is not None:
        messages = [_message(message, f"messages.{index}") for index, message in enumerate(body.messages)]
    elif body.input is not None:
        messages = _from_input(body.input)
    elif isinstance(body.text, str):
        messages = [ChatMessage("user", (body.text,))]
    elif body.text is not None:
        raise InputError("text: a closed chat model takes one text, not a list")
    else:
        raise InputError("a closed chat model needs `messages` (or `text`)")
    others = [name for name in ("url", "base64", "question", "context", "candidate_labels") if getattr(body, name)]
    if others:
        raise InputError(f"{', '.join(others)}: not taken by a chat model; send images as message content blocks")
    return chat_request(model, messages, generation_params(body.params), body.stream)


def chat_request(model: str, messages: Sequence[ChatMessage], params: GenerationParams, stream: bool) -> ChatRequest:
    if not messages:
        raise InputError("messages: at least one message is needed")
    if all(message.role == "system" for message in messages):
        raise InputError("messages: there is no user message")
    return ChatRequest(model=model, messages=tuple(messages), params=params, stream=stream)


def _from_input(value: str | list[Message] | list[str] | dict[str, Any]) -> list[ChatMessage]:
    if isinstance(value, str):
        return [ChatMessage("user", (value,))]
    if isinstance(value, dict):
        if "messages" in value:
            items = value["messages"]
            if not isinstance(items, list):
                raise InputError("input.messages: must be a list of messages")
            return [_message(Message.model_validate(item), f"input.messages.{i}") for i, item in enumerate(items)]
        if isinstance(value.get("text"), str):
            return [ChatMessage("user", (value["text"],))]
        raise InputError("input: a closed chat model takes messages or a text")
    messages: list[ChatMessage] = []
    for index, item in enumerate(value):
        if isinstance(item, Message):
            messages.append(_message(item, f"input.{index}"))
        else:
            messages.append(ChatMessage("user", (str(item),)))
    return messages


def _message(message: Message, where: str) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    if role not in ROLES:
        raise InputError(f"{where}.role: {message.role!r} is not one of system, user, assistant")
    if isinstance(message.content, str):
        return ChatMessage(_role(role), (message.content,))
    parts: list[Part] = []
    for index, block in enumerate(message.content):
        at = f"{where}.content.{index}"
        if block.type == "text":
            if block.text is None:
                raise InputError(f"{at}.text: a text block needs its text")
            parts.append(block.text)
        elif block.type == "image":
            parts.append(image(block.url, block.base64, at))
        else:
            raise InputError(f"{at}: a closed chat model takes text and images, not {block.type}")
    return ChatMessage(_role(role), tuple(parts))


def _role(role: str) -> Role:
    if role == "system":
        return "system"
    return "assistant" if role == "assistant" else "user"


def image(url: str | None, data: str | None, where: str) -> Image:
    """An image block by URL (https or ``data:``) or base64; :class:`InputError` otherwise."""
    if url is not None:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            media_type = header.removeprefix("data:").split(";", 1)[0] or "image/png"
            return Image(base64=payload, media_type=media_type)
        if not url.startswith(("https://", "http://")):
            raise InputError(f"{where}.url: an image URL is an http(s) or data: URL")
        return Image(url=url)
    if data is None:
        raise InputError(f"{where}: an image block needs a url or base64")
    return Image(base64=data, media_type=media_type_of(data, where))


def media_type_of(data: str, where: str) -> str:
    """The image type of base64 ``data`` from its first bytes; :class:`InputError` when it is not base64."""
    try:
        head = b64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{where}.base64: not base64") from exc
    for magic, media_type in _MAGIC:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    raise InputError(f"{where}.base64: not a PNG, JPEG, GIF or WebP image")


def generation_params(params: Mapping[str, Any]) -> GenerationParams:
    """The unified ``params`` as :class:`GenerationParams`; :class:`InputError` for unknown or ill-typed ones."""
    unknown = sorted(set(params) - set(PARAM_NAMES))
    if unknown:
        raise InputError(f"params: {', '.join(unknown)} not taken by closed models; they take {', '.join(PARAM_NAMES)}")
    if "max_tokens" in params and "max_new_tokens" in params and params["max_tokens"] != params["max_new_tokens"]:
        raise InputError("params: max_tokens and max_new_tokens differ; send one of them")
    max_tokens = _integer(params, "max_tokens", 1) or _integer(params, "max_new_tokens", 1)
    stop_value = params.get("stop", params.get("stop_sequences"))
    return GenerationParams(
        max_tokens=max_tokens,
        temperature=_number(params, "temperature", 0, 2),
        top_p=_number(params, "top_p", 0, 1),
        top_k=_integer(params, "top_k", 1),
        stop=_stops(stop_value),
        seed=_integer(params, "seed", None),
    )


def _integer(params: Mapping[str, Any], name: str, minimum: int | None) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"params.{name}: must be an integer")
    if minimum is not None and value < minimum:
        raise InputError(f"params.{name}: must be at least {minimum}")
    return value


def _number(params: Mapping[str, Any], name: str, low: float, high: float) -> float | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"params.{name}: must be a number")
    if not low <= value <= high:
        raise InputError(f"params.{name}: must be between {low:g} and {high:g}")
    return float(value)


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(stop, str) and stop for stop in stops):
        raise InputError("params.stop: a string or a list of non-empty strings")
    if len(stops) > MAX_STOP:
        raise InputError(f"params.stop: at most {MAX_STOP} stop sequences")
    return tuple(stops)
