"""The OpenAI SSE stream of one request, from the runtime's stream events (:mod:`modelcluster.api.streaming`).

The family serving the request (:class:`~.serving.OpenAIServing`) builds each chunk; this module sequences them:
the opening chunk, the text (cut at a stop sequence), the finish reason, the usage chunk when asked, ``[DONE]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from modelcluster.api.streaming import DONE_EVENT, Delta, Done, StreamEvent, TokenUsage
from modelcluster.gateway.openai.protocol import FinishReason, JSONDict, openai_error
from modelcluster.gateway.openai.translate import StopTrimmer, finish_reason

if TYPE_CHECKING:
    from modelcluster.gateway.openai.serving import OpenAIServing

SSE_DONE = DONE_EVENT.encode()


def sse(data: Mapping[str, Any]) -> bytes:
    """One server-sent event carrying ``data`` as compact JSON."""
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


class StreamTranslator:
    """Turns :data:`StreamEvent` s into the OpenAI SSE stream of one request, as bytes to send.

    ``start()`` first, then ``feed()`` for each event and ``close()`` at the end of the upstream body. Once
    ``finished`` is true the answer is complete (it ended with ``data: [DONE]``) and the upstream can be dropped,
    which also stops the generation (e.g. after a stop sequence).
    """

    def __init__(
        self,
        serving: OpenAIServing[Any],
        model: str,
        request_id: str,
        created: int,
        *,
        include_usage: bool = False,
        stop: Iterable[str] = (),
        max_tokens: int | None = None,
    ) -> None:
        self.serving = serving
        self.model = model
        self.request_id = request_id
        self.created = created
        self.include_usage = include_usage
        self.max_tokens = max_tokens
        self.trimmer = StopTrimmer(stop)
        self.usage: TokenUsage | None = None
        #: More fields of the usage chunk (the pricing figures), asked for when the stream finishes.
        self.usage_extra: Callable[[], Mapping[str, Any]] | None = None
        self.finished = False

    def start(self) -> bytes:
        """The opening chunk (the assistant role of a chat answer); nothing where the stream opens with text."""
        opening = self.serving.opening()
        return b"" if opening is None else self._chunk(opening)

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

    def _text_chunk(self, text: str) -> bytes:
        return self._chunk(self.serving.delta(text))

    def _chunk(self, fields: JSONDict, reason: FinishReason | None = None) -> bytes:
        chunk = self.serving.chunk(
            self.model, self.request_id, self.created, fields, finish_reason=reason, usage_field=self.include_usage
        )
        return sse(chunk)

    def _finish(self) -> bytes:
        self.finished = True
        out = self._chunk(self.serving.delta(None), finish_reason(self.trimmer.stopped, self.usage, self.max_tokens))
        if self.include_usage:
            chunk = self.serving.usage_chunk(self.model, self.request_id, self.created, self.usage)
            if self.usage_extra is not None:
                chunk["usage"] = {**chunk["usage"], **self.usage_extra()}
            out += sse(chunk)
        return out + SSE_DONE
