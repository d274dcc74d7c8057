"""The OpenAI protocol as the gateway speaks it: request models, their parsing, error bodies, model objects.

Requests: :class:`ChatCompletionRequest` and :class:`CompletionRequest` (unknown fields are errors, ``null`` means
absent), read by :func:`parse_request`, which raises :class:`BadRequest` naming the offending field. Every error the
OpenAI routes answer uses OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape (:func:`openai_error`,
:func:`openai_error_body`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelcluster.api.errors import ApiError, BadRequest

JSONDict = dict[str, Any]
FinishReason = Literal["stop", "length"]

# The runtime's own default for max_new_tokens; sent explicitly so the gateway knows the limit.
DEFAULT_MAX_TOKENS = 256
MAX_STOP_SEQUENCES = 4
DEFAULT_OWNER = "modelcluster"


# --- errors ------------------------------------------------------------------------------------------------------

# status -> (type, code) as OpenAI clients expect them; the client picks its exception class from the status alone.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
    408: ("invalid_request_error", "request_timeout"),
    409: ("conflict_error", None),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def openai_error_body(error: ApiError) -> JSONDict:
    """An error of the one vocabulary as the OpenAI routes answer it (at :attr:`ApiError.openai_status`)."""
    return openai_error(error.openai_status, error.message, param=error.param)


def openai_error(
    status: int, message: str, type_: str | None = None, code: str | None = None, param: str | None = None
) -> JSONDict:
    """``{"error": {"message", "type", "param", "code"}}``; ``type_`` and ``code`` default by status."""
    if status >= 500:
        default_type, default_code = "server_error", None
    else:
        default_type, default_code = _ERROR_KINDS.get(status, ("invalid_request_error", None))
    return {
        "error": {
            "message": message,
            "type": type_ or default_type,
            "param": param,
            "code": code or default_code,
        }
    }


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _error_text(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unrecognized field"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def summarize_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """The first ``limit`` problems, each naming its field: ``messages.0.role: Field required``."""
    errors = exc.errors()
    parts = [f"{_location(error['loc'])}: {_error_text(error)}" for error in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def validation_error_param(exc: ValidationError) -> str | None:
    """The field of the first problem, for OpenAI's ``param``; ``None`` when the body as a whole is wrong."""
    errors = exc.errors()
    if not errors or not errors[0]["loc"]:
        return None
    return _location(errors[0]["loc"])


# --- requests ----------------------------------------------------------------------------------------------------


class _Body(BaseModel):
    """Strict JSON types, unknown fields rejected, ``null`` read as absent."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class TextPart(_Body):
    """A content part; only text parts are served."""

    type: Literal["text"]
    text: str

    @model_validator(mode="before")
    @classmethod
    def _text_only(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError('a content part must be an object like {"type": "text", "text": "..."}')
        kind = data.get("type")
        if kind is not None and kind != "text":
            raise ValueError(f"only text content parts are supported, not {kind!r}")
        return data


def _content_as_parts(value: Any) -> Any:
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, list):
        return value
    raise ValueError("content must be a string or a list of text parts")


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[list[TextPart], BeforeValidator(_content_as_parts)]
    name: str | None = None  # accepted, not used

    @property
    def text(self) -> str:
        """The content as one string; text parts are joined by newlines."""
        return "\n".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: bool = False
    include_obfuscation: bool = False  # accepted, not used


def _stop_as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError("must be a string or a list of strings")


StopList = Annotated[
    list[Annotated[str, Field(min_length=1)]],
    BeforeValidator(_stop_as_list),
    Field(max_length=MAX_STOP_SEQUENCES),
]


class _GenerationRequest(_Body):
    """The fields chat and text completions share; field order matters to the cross-field checks."""

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int = 1
    stop: StopList = Field(default_factory=list)
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None  # accepted, not forwarded
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    user: str | None = None  # accepted, not used

    @field_validator("n")
    @classmethod
    def _one_choice(cls, value: int) -> int:
        if value != 1:
            raise ValueError(f"only n=1 is supported, got {value}")
        return value

    @field_validator("stream_options")
    @classmethod
    def _only_when_streaming(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and not info.data.get("stream", False):
            raise ValueError("only allowed when stream is true")
        return value

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, value: float) -> float:
        if value != 0:
            raise ValueError("not supported; send 0 or leave it out")
        return value

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        return self.max_tokens

    @property
    def max_new_tokens(self) -> int:
        """The limit the runtime generates to."""
        return self.token_limit or DEFAULT_MAX_TOKENS


class ChatCompletionRequest(_GenerationRequest):
    """``POST /chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    @field_validator("max_completion_tokens")
    @classmethod
    def _one_limit(cls, value: int | None, info: ValidationInfo) -> int | None:
        other = info.data.get("max_tokens")
        if value is not None and other is not None and other != value:
            raise ValueError(f"differs from max_tokens ({other}); send one of them")
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def _single_prompt(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    if value and not all(isinstance(item, str) for item in value):
        raise ValueError("token-id prompts are not supported; send the prompt as text")
    if len(value) != 1:
        raise ValueError(f"send exactly one prompt per request, got {len(value)}")
    return value[0]


class CompletionRequest(_GenerationRequest):
    """``POST /completions`` (legacy text completions)."""

    prompt: Annotated[str, Field(min_length=1), BeforeValidator(_single_prompt)]
    echo: bool = False

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, value: bool) -> bool:
        if value:
            raise ValueError("not supported; send false or leave it out")
        return value


OpenAIRequest = ChatCompletionRequest | CompletionRequest
RequestT = TypeVar("RequestT", ChatCompletionRequest, CompletionRequest)


def parse_request(kind: type[RequestT], raw: bytes) -> RequestT:
    """A request body as ``kind``; raises :class:`BadRequest` (400) naming the offending field."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return kind.model_validate(body)
    except ValidationError as exc:
        raise BadRequest(summarize_validation_error(exc), param=validation_error_param(exc)) from exc


# --- models ------------------------------------------------------------------------------------------------------


def model_object(model_id: str, created: int) -> JSONDict:
    """A ``model`` object; the owner is the organisation part of the id."""
    owner = model_id.split("/", 1)[0] if "/" in model_id else DEFAULT_OWNER
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


def models_list(models: Iterable[tuple[str, int]]) -> JSONDict:
    """``GET /models``: ``(model_id, created)`` pairs as OpenAI's model list."""
    return {"object": "list", "data": [model_object(model_id, created) for model_id, created in models]}
