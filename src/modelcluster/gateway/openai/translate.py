"""Between an OpenAI request and the runtime's ``POST /run``: generation params, token counts, stop sequences, errors.

Decisions:

- ``stop`` is enforced here, on the generated text (:class:`StopTrimmer`): neither runtime engine takes one stop
  parameter (transformers needs ``stop_strings`` plus the tokenizer, vLLM takes ``stop``). Once the runtime accepts
  ``stop_strings`` on both engines, ``run_params(..., runtime_stop=True)`` also sends it so generation ends early.
- ``seed`` is accepted and not forwarded: the transformers engine has no per-request seed.
- ``temperature: 0`` means greedy (``do_sample: false``); a positive temperature or a ``top_p`` turns sampling on;
  without either, the model's own generation defaults apply.
- ``max_new_tokens`` is always sent (:data:`~modelcluster.gateway.openai.protocol.DEFAULT_MAX_TOKENS` when the
  request has none) so that ``finish_reason: "length"`` can be told from the completion token count.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from modelcluster.api.errors import ApiError, BadGateway, BadRequest, UpstreamError
from modelcluster.api.inference import COMPLETION_TOKENS_HEADER, PROMPT_TOKENS_HEADER
from modelcluster.api.streaming import SSE_ACCEPT, TokenUsage, token_count
from modelcluster.gateway.openai.protocol import FinishReason, JSONDict, OpenAIRequest

# What the gateway sends upstream so that the runtime streams SSE events rather than raw text.
RUNTIME_STREAM_HEADERS = SSE_ACCEPT


# --- requests ----------------------------------------------------------------------------------------------------


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


def run_params(request: OpenAIRequest, *, runtime_stop: bool = False) -> JSONDict:
    """The ``params`` of the runtime's body; ``runtime_stop`` also sends the stop sequences as ``stop_strings``."""
    params = generation_params(request)
    if runtime_stop and request.stop:
        params["stop_strings"] = list(request.stop)
    return params


# --- answers -----------------------------------------------------------------------------------------------------


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


def output_text(output: object) -> str:
    """The generated text in a runtime output: a string (text generation) or ``{"role", "content"}`` (chat)."""
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("content"), str):
        return str(output["content"])
    raise BadGateway(f"the model answered an output that is not text ({type(output).__name__})")


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
