"""The OpenAI-compatible API (``/models/v2/openai/v1/...``) as pure translations onto the runtime's ``POST /run``.

Requests: :class:`ChatCompletionRequest` and :class:`CompletionRequest` (unknown fields are errors, ``null`` means
absent) become the runtime's unified body with :func:`to_run_body`.
Answers: the runtime's ``{"error", "output"}`` and its token counts become OpenAI bodies (:func:`chat_completion`,
:func:`completion`); its SSE stream is parsed by :class:`StreamParser` and turned into OpenAI chunks by
:class:`StreamTranslator`. Every error uses OpenAI's ``{"error": {"message", "type", "param", "code"}}`` shape.

Decisions:

- ``stop`` is enforced here, on the generated text (:class:`StopTrimmer`): neither runtime engine takes one stop
  parameter (transformers needs ``stop_strings`` plus the tokenizer, vLLM takes ``stop``). Once the runtime accepts
  ``stop_strings`` on both engines, ``to_run_body(..., runtime_stop=True)`` also sends it so generation ends early.
- ``seed`` is accepted and not forwarded: the transformers engine has no per-request seed.
- ``temperature: 0`` means greedy (``do_sample: false``); a positive temperature or a ``top_p`` turns sampling on;
  without either, the model's own generation defaults apply.
- ``max_new_tokens`` is always sent (:data:`DEFAULT_MAX_TOKENS` when the request has none) so that
  ``finish_reason: "length"`` can be told from the completion token count.
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

from modelcluster.api.errors import ApiError, BadGateway, BadRequest, UpstreamError
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.api.streaming import (
    DONE_EVENT,
    SSE_ACCEPT,
    Delta,
    Done,
    StreamEvent,
    TokenUsage,
    token_count,
)

JSONDict = dict[str, Any]
FinishReason = Literal["stop", "length"]

SSE_DONE = DONE_EVENT.encode()
# What the gateway sends upstream so that the runtime streams SSE events rather than raw text.
RUNTIME_STREAM_HEADERS = SSE_ACCEPT
# The runtime's own default for max_new_tokens; sent explicitly so the gateway knows the limit.
DEFAULT_MAX_TOKENS = 256
MAX_STOP_SEQUENCES = 4
# Completions against these tasks ask the runtime for the generated text only (``return_full_text: false``).
FULL_TEXT_TASKS = frozenset({"text-generation"})
DEFAULT_OWNER = "modelcluster"


# --- errors ------------------------------------------------------------------------------------------------------

# status -> (type, code) as OpenAI clients expect them; the client picks its exception class from the status alone.
_ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("not_found_error", "model_not_found"),
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


def runtime_error(status: int, body: bytes) -> ApiError:
    """An error answer of the runtime (``{"error": "...", "output": null}``) as the error to give the client.

    The runtime's 422 (input the model cannot take) is a plain bad request to OpenAI clients.
    """
    message = ""
    try:
        decoded = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        message = decoded["error"]
    if not message:
        message = body[:500].decode("utf-8", "replace").strip() or f"the model answered HTTP {status}"
    if status == 422:
        return BadRequest(message)
    if status < 400:
        return BadGateway(f"the model answered HTTP {status}: {message}")
    return UpstreamError(status, message)


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


def generation_params(request: OpenAIRequest) -> JSONDict:
    """The runtime's generation params (generate() names) for a request."""
    params: JSONDict = {"max_new_tokens": request.max_new_tokens}
    if request.temperature == 0:
        params["do_sample"] = False
        return params
    if request.temperature is not None:
        params["do_sample"] = True
        params["temperature"] = request.temperature
    if request.top_p is not None:
        params["do_sample"] = True
        params["top_p"] = request.top_p
    return params


def to_run_body(request: OpenAIRequest, *, task: str = "text-generation", runtime_stop: bool = False) -> JSONDict:
    """The runtime's ``POST /run`` body.

    ``task`` is the model's task; for completions against :data:`FULL_TEXT_TASKS` the runtime is asked for the
    generated text only. ``runtime_stop`` also sends the stop sequences as ``stop_strings``.
    """
    params = generation_params(request)
    if runtime_stop and request.stop:
        params["stop_strings"] = list(request.stop)
    if isinstance(request, ChatCompletionRequest):
        messages = [
            {"role": "system" if message.role == "developer" else message.role, "content": message.text}
            for message in request.messages
        ]
        return {"messages": messages, "params": params, "stream": request.stream}
    if task in FULL_TEXT_TASKS:
        params["return_full_text"] = False
    return {"text": request.prompt, "params": params, "stream": request.stream}


# --- token counts and stop sequences -----------------------------------------------------------------------------


def usage_from_headers(headers: Mapping[str, str]) -> TokenUsage | None:
    """The runtime's ``X-Prompt-Tokens`` / ``X-Completion-Tokens`` (any case); ``None`` when neither is there."""
    lowered = {key.lower(): value for key, value in headers.items()}
    prompt = lowered.get(PROMPT_TOKENS_HEADER.lower())
    completion = lowered.get(COMPLETION_TOKENS_HEADER.lower())
    if prompt is None and completion is None:
        return None
    return TokenUsage(token_count(prompt), token_count(completion))


def finish_reason(stopped: bool, usage: TokenUsage | None, max_tokens: int | None) -> FinishReason:
    """``length`` when the generation used up its token limit, else ``stop``."""
    if not stopped and usage is not None and max_tokens is not None and usage.completion_tokens >= max_tokens:
        return "length"
    return "stop"


class StopTrimmer:
    """Cuts streamed text before the first stop sequence, whatever the chunk boundaries.

    Text that could be the start of a stop sequence is held back until it is known not to be one. The cut is at
    the occurrence that completes first (the earliest-ending one), so the result does not depend on chunking.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(stop for stop in stops if stop)
        self.held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The text that can be sent now."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buffer = self.held + text
        found = [(index + len(stop), index) for stop in self.stops if (index := buffer.find(stop)) >= 0]
        if found:
            self.stopped = True
            self.held = ""
            return buffer[: min(found)[1]]
        keep = self._partial_suffix(buffer)
        self.held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """What was held back, once the text has ended without a stop sequence."""
        held, self.held = self.held, ""
        return held

    def _partial_suffix(self, buffer: str) -> int:
        """The length of the longest end of ``buffer`` that begins some stop sequence."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest


def apply_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """``text`` cut before its first stop sequence, and whether one was found."""
    trimmer = StopTrimmer(stops)
    kept = trimmer.feed(text)
    return kept + trimmer.flush(), trimmer.stopped


# --- responses ---------------------------------------------------------------------------------------------------


def output_text(output: object) -> str:
    """The generated text in a runtime output: a string (text generation) or ``{"role", "content"}`` (chat)."""
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("content"), str):
        return str(output["content"])
    raise BadGateway(f"the model answered an output that is not text ({type(output).__name__})")


def chat_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def completion_id(request_id: str) -> str:
    return f"cmpl-{request_id}"


def chat_completion(
    model: str,
    output: object,
    usage: TokenUsage | None,
    created: int,
    request_id: str,
    *,
    stop: Iterable[str] = (),
    max_tokens: int | None = None,
) -> JSONDict:
    """A ``chat.completion`` body from the runtime's output; ``usage`` absent reads as zero counts."""
    text, stopped = apply_stop(output_text(output), stop)
    return {
        "id": chat_id(request_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason(stopped, usage, max_tokens),
            }
        ],
        "usage": (usage or TokenUsage()).as_dict(),
    }


def completion(
    model: str,
    output: object,
    usage: TokenUsage | None,
    created: int,
    request_id: str,
    *,
    stop: Iterable[str] = (),
    max_tokens: int | None = None,
) -> JSONDict:
    """A ``text_completion`` body from the runtime's output; ``usage`` absent reads as zero counts."""
    text, stopped = apply_stop(output_text(output), stop)
    return {
        "id": completion_id(request_id),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(stopped, usage, max_tokens)}
        ],
        "usage": (usage or TokenUsage()).as_dict(),
    }


def chat_chunk(
    model: str,
    request_id: str,
    created: int,
    *,
    role: bool = False,
    content: str | None = None,
    finish_reason: FinishReason | None = None,
    usage_field: bool = False,
) -> JSONDict:
    """One ``chat.completion.chunk``: the first carries the role, the last an empty delta and the finish reason.

    ``usage_field`` adds ``"usage": null``, as every chunk has when the client asked for usage.
    """
    delta: dict[str, str] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    chunk: JSONDict = {
        "id": chat_id(request_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_field:
        chunk["usage"] = None
    return chunk


def completion_chunk(
    model: str,
    request_id: str,
    created: int,
    *,
    text: str = "",
    finish_reason: FinishReason | None = None,
    usage_field: bool = False,
) -> JSONDict:
    """One streamed ``text_completion`` chunk."""
    chunk: JSONDict = {
        "id": completion_id(request_id),
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage_field:
        chunk["usage"] = None
    return chunk


def usage_chunk(
    kind: Literal["chat", "completion"], model: str, request_id: str, created: int, usage: TokenUsage | None
) -> JSONDict:
    """The last chunk of a stream with ``stream_options.include_usage``: no choices, the token counts."""
    chat = kind == "chat"
    return {
        "id": chat_id(request_id) if chat else completion_id(request_id),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": [],
        "usage": (usage or TokenUsage()).as_dict(),
    }


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as compact JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def model_object(model_id: str, created: int) -> JSONDict:
    """A ``model`` object; the owner is the organisation part of the id."""
    owner = model_id.split("/", 1)[0] if "/" in model_id else DEFAULT_OWNER
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner}


def models_list(models: Iterable[tuple[str, int]]) -> JSONDict:
    """``GET /models``: ``(model_id, created)`` pairs as OpenAI's model list."""
    return {"object": "list", "data": [model_object(model_id, created) for model_id, created in models]}


class StreamTranslator:
    """Turns :data:`StreamEvent` s into the OpenAI SSE stream of one request, as bytes to send.

    ``start()`` first, then ``feed()`` for each event and ``close()`` at the end of the upstream body. Once
    ``finished`` is true the answer is complete (it ended with ``data: [DONE]``) and the upstream can be dropped,
    which also stops the generation (e.g. after a stop sequence).
    """

    def __init__(
        self,
        kind: Literal["chat", "completion"],
        model: str,
        request_id: str,
        created: int,
        *,
        include_usage: bool = False,
        stop: Iterable[str] = (),
        max_tokens: int | None = None,
    ) -> None:
        self.kind = kind
        self.model = model
        self.request_id = request_id
        self.created = created
        self.include_usage = include_usage
        self.max_tokens = max_tokens
        self.trimmer = StopTrimmer(stop)
        self.usage: TokenUsage | None = None
        self.finished = False

    @classmethod
    def for_request(cls, request: OpenAIRequest, request_id: str, created: int) -> StreamTranslator:
        return cls(
            "chat" if isinstance(request, ChatCompletionRequest) else "completion",
            request.model,
            request_id,
            created,
            include_usage=request.include_usage,
            stop=request.stop,
            max_tokens=request.max_new_tokens,
        )

    def start(self) -> bytes:
        """The opening chunk: the assistant role of a chat answer; nothing for text completions."""
        if self.kind == "chat":
            return self._text_chunk("", role=True)
        return b""

    def feed(self, event: StreamEvent) -> bytes:
        if self.finished:
            return b""
        if isinstance(event, Delta):
            text = self.trimmer.feed(event.text)
            out = self._text_chunk(text) if text else b""
            return out + self._finish() if self.trimmer.stopped else out
        if isinstance(event, TokenUsage):
            self.usage = event
            return b""
        if isinstance(event, Done):
            held = self.trimmer.flush()
            return (self._text_chunk(held) if held else b"") + self._finish()
        return self.fail(event.message)

    def close(self) -> bytes:
        """The upstream body ended; a stream not yet finished ends with an error."""
        if self.finished:
            return b""
        return self.fail("the model stream ended before the generation finished")

    def fail(self, message: str, status: int = 500) -> bytes:
        """An error event in OpenAI's shape, then ``[DONE]``."""
        if self.finished:
            return b""
        self.finished = True
        return sse(openai_error(status, message)) + SSE_DONE

    def _text_chunk(self, text: str, *, role: bool = False) -> bytes:
        if self.kind == "chat":
            chunk = chat_chunk(
                self.model, self.request_id, self.created, role=role, content=text, usage_field=self.include_usage
            )
        else:
            chunk = completion_chunk(
                self.model, self.request_id, self.created, text=text, usage_field=self.include_usage
            )
        return sse(chunk)

    def _finish(self) -> bytes:
        self.finished = True
        reason = finish_reason(self.trimmer.stopped, self.usage, self.max_tokens)
        if self.kind == "chat":
            last = chat_chunk(
                self.model, self.request_id, self.created, finish_reason=reason, usage_field=self.include_usage
            )
        else:
            last = completion_chunk(
                self.model, self.request_id, self.created, finish_reason=reason, usage_field=self.include_usage
            )
        out = sse(last)
        if self.include_usage:
            out += sse(usage_chunk(self.kind, self.model, self.request_id, self.created, self.usage))
        return out + SSE_DONE
