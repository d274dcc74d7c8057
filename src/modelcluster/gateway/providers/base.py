"""The types every provider translation shares: the unified chat request, the provider request, the answer.

A provider module is an :class:`Adapter`: pure functions from a :class:`ChatRequest` to an
:class:`UpstreamRequest`, from the provider's JSON answer to an :class:`Answer`, from its server-sent events to
:data:`ProviderEvent` s (:class:`StreamDecoder`), and from its error answers to the API's errors. No I/O here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from modelcluster.api.errors import ApiError
from modelcluster.api.streaming import Delta, Done, TokenUsage

JSONDict = dict[str, Any]
Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Image:
    """An image of a message: by ``url`` (https or a ``data:`` URL), or as ``base64`` with its media type."""

    url: str | None = None
    base64: str | None = None
    media_type: str = "image/png"

    @property
    def data_url(self) -> str:
        """The image as a URL: its own, or a ``data:`` URL of its bytes."""
        return self.url if self.url is not None else f"data:{self.media_type};base64,{self.base64}"


Part = str | Image


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        """The text parts, joined by newlines."""
        return "\n".join(part for part in self.parts if isinstance(part, str))

    @property
    def images(self) -> tuple[Image, ...]:
        return tuple(part for part in self.parts if isinstance(part, Image))


@dataclass(frozen=True)
class GenerationParams:
    """The generation parameters every provider takes in some form; ``None`` leaves the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class ChatRequest:
    """One chat request for a closed model: ``model`` is the provider's own name (no ``org/`` prefix)."""

    model: str
    messages: tuple[ChatMessage, ...]
    params: GenerationParams = field(default_factory=GenerationParams)
    stream: bool = False

    @property
    def system(self) -> str:
        """The system messages' text, for providers that take the system prompt apart from the turns."""
        return "\n".join(message.text for message in self.messages if message.role == "system")

    @property
    def turns(self) -> tuple[ChatMessage, ...]:
        return tuple(message for message in self.messages if message.role != "system")


@dataclass(frozen=True)
class UpstreamRequest:
    """What to POST to the provider: ``path`` below its base URL (with any query), headers (the key's among them)."""

    path: str
    headers: Mapping[str, str]
    body: JSONDict
    stream: bool


@dataclass(frozen=True)
class Answer:
    """A whole answer: the text, the provider's finish reason, its token counts and its raw JSON."""

    text: str
    finish_reason: str | None
    usage: TokenUsage | None
    raw: Any


@dataclass(frozen=True)
class StreamFailed:
    """The provider's stream carried an error after its 200 (or broke off): nothing follows."""

    error: ApiError


ProviderEvent = Delta | TokenUsage | Done | StreamFailed


@dataclass(frozen=True)
class SSEMessage:
    """One server-sent event: its ``event`` name (``message`` when none) and its data lines joined."""

    event: str
    data: str


class StreamDecoder(Protocol):
    """The provider's stream of one request, event by event; ``usage`` is what it has counted so far."""

    usage: TokenUsage | None
    finished: bool

    def feed(self, message: SSEMessage) -> list[ProviderEvent]: ...

    def close(self) -> list[ProviderEvent]:
        """The provider's body ended (no event after it)."""
        ...


class Adapter(Protocol):
    """One provider's translation (a module of this package)."""

    name: str
    default_base_url: str

    def request(self, chat: ChatRequest, key: str) -> UpstreamRequest: ...

    def answer(self, body: Any) -> Answer: ...

    def decoder(self) -> StreamDecoder: ...

    def error(self, status: int, body: bytes, headers: Mapping[str, str]) -> ApiError: ...


def present(fields: Mapping[str, object]) -> JSONDict:
    """The fields that are set: a parameter left ``None`` (or an empty ``stop``) keeps the provider's default."""
    return {name: value for name, value in fields.items() if value is not None and value != []}


def bearer_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


ImagePart = Callable[[Image], object]


def chat_messages(chat: ChatRequest, image_part: ImagePart) -> list[JSONDict]:
    """Messages in the OpenAI shape that OpenAI, Mistral and Cohere take: plain text, or text and image parts.

    ``image_part`` renders an image's ``image_url`` value (an object for OpenAI and Cohere, a string for Mistral).
    """
    return [_chat_message(message, image_part) for message in chat.messages]


def _chat_message(message: ChatMessage, image_part: ImagePart) -> JSONDict:
    if not message.images:
        return {"role": message.role, "content": message.text}
    parts: list[JSONDict] = [
        {"type": "text", "text": part}
        if isinstance(part, str)
        else {"type": "image_url", "image_url": image_part(part)}
        for part in message.parts
    ]
    return {"role": message.role, "content": parts}


def chat_body(chat: ChatRequest, image_part: ImagePart, params: Mapping[str, object]) -> JSONDict:
    """``model``, ``messages`` and the set ``params`` (under the provider's names), with ``stream`` when streaming."""
    body: JSONDict = {"model": chat.model, "messages": chat_messages(chat, image_part), **present(params)}
    if chat.stream:
        body["stream"] = True
    return body


def url_object(image: Image) -> object:
    return {"url": image.data_url}


class StreamState:
    """What every stream decoder keeps: the usage counted so far, and whether the stream has ended."""

    def __init__(self) -> None:
        self.usage: TokenUsage | None = None
        self.finished = False

    def done(self) -> list[ProviderEvent]:
        """The stream ended well: the usage counted, then :class:`Done`."""
        self.finished = True
        return [*([self.usage] if self.usage is not None else []), Done()]

    def fail(self, error: ApiError) -> list[ProviderEvent]:
        self.finished = True
        return [StreamFailed(error)]
