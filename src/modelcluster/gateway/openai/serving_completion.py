"""``POST /completions`` (legacy text completions): one prompt in, ``text_completion`` bodies and chunks out."""

from __future__ import annotations

from modelcluster.gateway.openai.protocol import CompletionRequest, JSONDict
from modelcluster.gateway.openai.serving import OpenAIServing
from modelcluster.gateway.openai.translate import run_params

COMPLETION_TASKS = frozenset({"text-generation", "text2text-generation", "summarization", "translation"})
# Completions against these tasks ask the runtime for the generated text only (``return_full_text: false``).
FULL_TEXT_TASKS = frozenset({"text-generation"})


class CompletionServing(OpenAIServing[CompletionRequest]):
    """A prompt in; the generated text out, streamed as text pieces."""

    request_type = CompletionRequest
    tasks = COMPLETION_TASKS
    route = "completions"
    id_prefix = "cmpl-"
    response_object = "text_completion"
    chunk_object = "text_completion"

    def run_body(self, request: CompletionRequest, *, task: str, runtime_stop: bool = False) -> JSONDict:
        """``{"text", "params", "stream"}``; against :data:`FULL_TEXT_TASKS`, the generated text only."""
        params = run_params(request, runtime_stop=runtime_stop)
        if task in FULL_TEXT_TASKS:
            params["return_full_text"] = False
        return {"text": request.prompt, "params": params, "stream": request.stream}

    def message(self, text: str) -> JSONDict:
        return {"text": text}

    def delta(self, text: str | None) -> JSONDict:
        return {"text": text or ""}


COMPLETION = CompletionServing()
