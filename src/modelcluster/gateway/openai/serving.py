"""What every OpenAI route family shares: its request model and tasks, the answer's envelope, chunks, the translator.

A family (:mod:`.serving_chat`, :mod:`.serving_completion`) is one :class:`OpenAIServing` subclass that names its
request model, the tasks it runs, its ``id`` prefix and ``object`` names, builds the runtime's body and the
family's part of each choice. The envelope (``id``, ``object``, ``created``, ``model``, ``choices``, ``usage``) is
built here, so chat versus completion is chosen once: by the family that serves the route.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Generic

from modelcluster.api.streaming import TokenUsage
from modelcluster.gateway.openai.protocol import FinishReason, JSONDict, RequestT, parse_request
from modelcluster.gateway.openai.streaming import StreamTranslator
from modelcluster.gateway.openai.translate import apply_stop, finish_reason, output_text


class OpenAIServing(ABC, Generic[RequestT]):
    """One family of OpenAI completion routes; stateless, one instance per family."""

    #: The body of the family's route.
    request_type: type[RequestT]
    #: The model tasks the route can run.
    tasks: frozenset[str]
    #: The route below ``/v1/``, as errors name it.
    route: str
    #: ``id`` is this prefix and the request id.
    id_prefix: str
    #: ``object`` of a whole answer and of a streamed chunk.
    response_object: str
    chunk_object: str

    def parse(self, raw: bytes) -> RequestT:
        """A request body of this family; raises :class:`BadRequest` (400) naming the offending field."""
        return parse_request(self.request_type, raw)

    @abstractmethod
    def run_body(self, request: RequestT, *, task: str, runtime_stop: bool = False) -> JSONDict:
        """The runtime's ``POST /run`` body for a model of ``task``; ``runtime_stop`` also sends ``stop_strings``."""

    @abstractmethod
    def message(self, text: str) -> JSONDict:
        """The family's fields of the choice of a whole answer."""

    @abstractmethod
    def delta(self, text: str | None) -> JSONDict:
        """The family's fields of a streamed choice; ``text`` is ``None`` in the last one (the finish reason's)."""

    def opening(self) -> JSONDict | None:
        """The family's fields of the chunk a stream opens with; ``None``: the stream opens with its first text."""
        return None

    def response_id(self, request_id: str) -> str:
        return self.id_prefix + request_id

    def response(
        self,
        model: str,
        output: object,
        usage: TokenUsage | None,
        created: int,
        request_id: str,
        *,
        stop: Iterable[str] = (),
        max_tokens: int | None = None,
    ) -> JSONDict:
        """The whole answer from the runtime's output; ``usage`` absent reads as zero counts."""
        text, stopped = apply_stop(output_text(output), stop)
        choice = _choice(self.message(text), finish_reason(stopped, usage, max_tokens))
        answer = self._envelope(self.response_object, model, request_id, created, [choice])
        answer["usage"] = (usage or TokenUsage()).as_dict()
        return answer

    def chunk(
        self,
        model: str,
        request_id: str,
        created: int,
        fields: JSONDict,
        *,
        finish_reason: FinishReason | None = None,
        usage_field: bool = False,
    ) -> JSONDict:
        """One streamed chunk with the family's ``fields`` (:meth:`delta`, :meth:`opening`).

        ``usage_field`` adds ``"usage": null``, as every chunk has when the client asked for usage.
        """
        chunk = self._envelope(self.chunk_object, model, request_id, created, [_choice(fields, finish_reason)])
        if usage_field:
            chunk["usage"] = None
        return chunk

    def usage_chunk(self, model: str, request_id: str, created: int, usage: TokenUsage | None) -> JSONDict:
        """The last chunk of a stream with ``stream_options.include_usage``: no choices, the token counts."""
        chunk = self._envelope(self.chunk_object, model, request_id, created, [])
        chunk["usage"] = (usage or TokenUsage()).as_dict()
        return chunk

    def translator(self, request: RequestT, request_id: str, created: int) -> StreamTranslator:
        """The translator of the runtime's stream for ``request``."""
        return StreamTranslator(
            self,
            request.model,
            request_id,
            created,
            include_usage=request.include_usage,
            stop=request.stop,
            max_tokens=request.max_new_tokens,
        )

    def _envelope(self, object_: str, model: str, request_id: str, created: int, choices: list[JSONDict]) -> JSONDict:
        return {
            "id": self.response_id(request_id),
            "object": object_,
            "created": created,
            "model": model,
            "choices": choices,
        }


def _choice(fields: JSONDict, reason: FinishReason | None) -> JSONDict:
    return {"index": 0, **fields, "logprobs": None, "finish_reason": reason}
