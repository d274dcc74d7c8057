"""``POST /chat/completions``: chat models, answered as ``chat.completion`` bodies and ``chat.completion.chunk`` s."""

from __future__ import annotations

from modelcluster.gateway.openai.protocol import ChatCompletionRequest, JSONDict
from modelcluster.gateway.openai.serving import OpenAIServing
from modelcluster.gateway.openai.translate import run_params

CHAT_TASKS = frozenset({"chat", "image-text-to-text", "audio-text-to-text", "video-text-to-text"})


class ChatServing(OpenAIServing[ChatCompletionRequest]):
    """Messages in; the assistant's message out, streamed as deltas that open with its role."""

    request_type = ChatCompletionRequest
    tasks = CHAT_TASKS
    route = "chat/completions"
    id_prefix = "chatcmpl-"
    response_object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def run_body(self, request: ChatCompletionRequest, *, task: str, runtime_stop: bool = False) -> JSONDict:
        """``{"messages", "params", "stream"}``; a ``developer`` message goes as ``system``, parts joined."""
        messages = [
            {"role": "system" if message.role == "developer" else message.role, "content": message.text}
            for message in request.messages
        ]
        return {
            "messages": messages,
            "params": run_params(request, runtime_stop=runtime_stop),
            "stream": request.stream,
        }

    def message(self, text: str) -> JSONDict:
        return {"message": {"role": "assistant", "content": text}}

    def delta(self, text: str | None) -> JSONDict:
        return {"delta": {} if text is None else {"content": text}}

    def opening(self) -> JSONDict:
        return {"delta": {"role": "assistant", "content": ""}}


CHAT = ChatServing()
