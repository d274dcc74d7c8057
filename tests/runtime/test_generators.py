"""Media generators over real HTTP on tiny models built offline (:mod:`tiny_builders`): text-to-speech (VITS),
text-to-audio (MusicGen), text-to-image (Stable Diffusion) and text-to-video (the text-to-video Stable Diffusion
pipeline). Each answers base64 media in JSON by default, and the raw bytes with their content type when the body
says ``"json": false``, as the SDK sends it (with ``"stream": true``) when it streams a media task.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from runtime_support import ServerHandle

from modelcluster.devcluster import tiny_builders


def post(server: ServerHandle, body: object) -> httpx.Response:
    with server.client() as client:
        return client.post("/run", json=body)


def json_media(server: ServerHandle, body: dict[str, Any]) -> bytes:
    """The media of a JSON answer (``output`` is base64)."""
    response = post(server, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    output = response.json()["output"]
    assert isinstance(output, str)
    return base64.b64decode(output, validate=True)


def raw_media(server: ServerHandle, body: dict[str, Any], mime: str) -> bytes:
    """The media answered raw: ``json: false``, and the same the way the SDK streams a media task."""
    response = post(server, {**body, "json": False})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == mime
    sdk = {"input": body["text"], "params": body.get("params"), "stream": True, "json": False}
    streamed = post(server, sdk)
    assert streamed.status_code == 200, streamed.text
    assert streamed.headers["content-type"] == mime
    return response.content


def wav_samples(data: bytes) -> tuple[Any, int]:
    import soundfile

    samples, rate = soundfile.read(io.BytesIO(data), dtype="float32")
    return samples, rate


def video_frames(data: bytes) -> list[Any]:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        assert container.format.name.startswith("mov,mp4")
        return [frame.to_image() for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def speech(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> ServerHandle:
    return serve(tiny_model("vits"), "text-to-speech")


@pytest.fixture(scope="module")
def music(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> ServerHandle:
    return serve(tiny_model("musicgen"), "text-to-audio")


@pytest.fixture(scope="module")
def images(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> ServerHandle:
    return serve(tiny_model("stable_diffusion"), "text-to-image")


@pytest.fixture(scope="module")
def videos(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> ServerHandle:
    return serve(tiny_model("text_to_video_sd"), "text-to-video")


def test_text_to_speech_answers_a_wav(speech: ServerHandle) -> None:
    body = {"text": "hello world"}
    samples, rate = wav_samples(json_media(speech, body))
    assert rate == 16000
    assert samples.ndim == 1 and samples.size > 0
    raw_samples, raw_rate = wav_samples(raw_media(speech, body, "audio/wav"))
    assert raw_rate == 16000 and raw_samples.size > 0
    empty = post(speech, {"text": "  "})
    assert empty.status_code == 422
    assert "non-empty" in empty.json()["error"]


def test_text_to_audio_length_follows_the_generated_frames(music: ServerHandle) -> None:
    def samples_for(steps: int) -> int:
        samples, rate = wav_samples(
            json_media(music, {"text": "happy rock music", "params": {"generate_kwargs": {"max_new_tokens": steps}}})
        )
        assert rate == tiny_builders.MUSICGEN_RATE
        return int(samples.size)

    delay = tiny_builders.MUSICGEN_CODEBOOKS - 1  # steps spent on the codebooks' delay pattern
    assert samples_for(8) == (8 - delay) * tiny_builders.MUSICGEN_HOP
    assert samples_for(4) == (4 - delay) * tiny_builders.MUSICGEN_HOP
    body = {"text": "happy rock music", "params": {"generate_kwargs": {"max_new_tokens": 6}}}
    assert raw_media(music, body, "audio/wav") == json_media(music, body), "greedy generation: the same audio"


def test_text_to_image_size_seed_and_raw_bytes(images: ServerHandle) -> None:
    from PIL import Image

    body = {"text": "a cat", "params": {"num_inference_steps": 2, "seed": 7, "height": 16, "width": 24}}
    png = json_media(images, body)
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (24, 16))
    assert json_media(images, body) == png, "the same seed gives the same image"
    assert raw_media(images, body, "image/png") == png
    default = Image.open(io.BytesIO(json_media(images, {"text": "a cat", "params": {"num_inference_steps": 1}})))
    assert default.size == (8, 8)  # the UNet's sample size, times the VAE's scale factor of 1
    assert post(images, {"params": {"num_inference_steps": 1}}).status_code == 422


def test_text_to_video_answers_an_mp4(videos: ServerHandle) -> None:
    params = {"num_inference_steps": 2, "num_frames": 3, "seed": 1, "height": 16, "width": 16}
    body = {"text": "a cat", "params": params}
    frames = video_frames(json_media(videos, body))
    assert len(frames) == 3
    assert {frame.size for frame in frames} == {(16, 16)}
    raw = video_frames(raw_media(videos, body, "video/mp4"))
    assert len(raw) == 3
    assert post(videos, {"params": params}).status_code == 422
