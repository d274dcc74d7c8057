"""image-, video- and audio-text-to-text over real HTTP on tiny models built offline (:mod:`tiny_builders`): chat
messages whose content blocks carry media answer ``{role: "assistant", content}``; and the parsing of those blocks."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from media_samples import b64, mp4, png, wav
from runtime_support import ServerHandle

from modelcluster.api.inference import RunRequest
from modelcluster.api.inputs import MESSAGES, Payload, normalize

MEDIA = {
    "image": lambda: b64(png((40, 30), ((200, 30, 30), (30, 30, 200)))),
    "video": lambda: b64(mp4(frames=6, size=(32, 32))),
    "audio": lambda: b64(wav(rate=8000, seconds=0.5)),
}
MODELS = {"image-text-to-text": "llava", "video-text-to-text": "qwen2_vl", "audio-text-to-text": "qwen2_audio"}


def conversation(kind: str) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": [{"type": "text", "text": f"What is in this {kind}?"}, {"type": kind, "base64": MEDIA[kind]()}],
        },
    ]


def answer(server: ServerHandle, body: dict[str, Any]) -> str:
    with server.client() as client:
        response = client.post("/run", json=body)
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert set(output) == {"role", "content"}
    assert output["role"] == "assistant"
    content: str = output["content"]
    assert isinstance(content, str)
    return content


@pytest.mark.parametrize(("task", "kind"), [(task, task.split("-")[0]) for task in MODELS])
def test_media_chat_answers_as_the_assistant(
    serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path], task: str, kind: str
) -> None:
    server = serve(tiny_model(MODELS[task]), task)
    messages = conversation(kind)
    long = answer(
        server, {"messages": messages, "params": {"max_new_tokens": 8, "generate_kwargs": {"min_new_tokens": 8}}}
    )
    short = answer(
        server, {"messages": messages, "params": {"max_new_tokens": 3, "generate_kwargs": {"min_new_tokens": 3}}}
    )
    assert short and len(short) < len(long)
    assert long.startswith(short), "greedy decoding of fixed weights: the longer answer continues the shorter one"
    assert "assistant:" not in long, "the answer holds the generated text only, not the prompt"
    via_sdk = answer(
        server, {"input": messages, "params": {"max_new_tokens": 3, "generate_kwargs": {"min_new_tokens": 3}}}
    )
    assert via_sdk == short
    with server.client() as client:
        streamed = client.post("/run", json={"messages": messages, "stream": True})
        assert streamed.status_code == 422
        assert "does not stream" in streamed.json()["error"]


def test_media_chat_parses_blocks_and_decodes_media() -> None:
    from PIL import Image

    from modelcluster.api.errors import InputError
    from modelcluster.runtime.tasks.multimodal import MediaChatHandler

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG")
    image_b64 = base64.b64encode(buffer.getvalue()).decode()
    body = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this image?"},
                    {"type": "image", "base64": image_b64},
                    {"type": "audio", "url": "http://127.0.0.1:9/a.wav"},
                ],
            },
        ]
    }
    payload: Payload = normalize(RunRequest.model_validate(body), "image-text-to-text", MESSAGES)
    handler = MediaChatHandler("image-text-to-text", model=None, processor=None, device="cpu")
    assert handler.sampling_rate == 16000  # without a feature extractor
    refs = handler.media_refs(payload)
    assert [(r.url, r.base64) for r in refs] == [(None, image_b64), ("http://127.0.0.1:9/a.wav", None)]
    parsed = handler.prepare(payload, [buffer.getvalue(), base64.b64decode(b64(wav()))])
    user = parsed[1]["content"]
    assert user[0] == {"type": "text", "text": "What is this image?"}
    assert user[1]["image"].size == (4, 4)
    assert user[2]["audio"].dtype.name == "float32"
    assert user[2]["audio"].shape == (8000,)  # 0.5 s resampled from 8 kHz to 16 kHz
    bad = RunRequest.model_validate({"messages": [{"role": "user", "content": [{"type": "image"}]}]})
    with pytest.raises(InputError, match="exactly one of"):
        handler.media_refs(normalize(bad, "image-text-to-text", MESSAGES))
