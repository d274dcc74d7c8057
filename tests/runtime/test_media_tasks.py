"""Audio classification and speech recognition, unconditional image generation, object detection and image
features over real HTTP with tiny models."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from media_samples import b64, wav
from runtime_support import ServerHandle

from modelcluster.devcluster import tiny_builders


@pytest.fixture(scope="module")
def audio_classifier(serve: Callable[..., ServerHandle], models_dir: Path) -> ServerHandle:
    return serve(tiny_builders.wav2vec2_classifier(models_dir / "wav2vec2"), "audio-classification")


def test_audio_classification(audio_classifier: ServerHandle) -> None:
    with audio_classifier.client() as client:
        response = client.post("/run", json={"base64": b64(wav())})
        assert response.status_code == 200, response.text
        output = response.json()["output"]
        assert {item["label"] for item in output} == {"speech", "music"}
        assert all(0.0 <= item["score"] <= 1.0 for item in output)
        bad = client.post("/run", json={"base64": base64.b64encode(b"RIFF but not really audio").decode()})
        assert bad.status_code == 422
        assert "audio" in bad.json()["error"]


@pytest.fixture(scope="module")
def ddpm(serve: Callable[..., ServerHandle], models_dir: Path) -> ServerHandle:
    return serve(tiny_builders.ddpm(models_dir / "ddpm"), "unconditional-image-generation")


def test_unconditional_image_generation(ddpm: ServerHandle) -> None:
    from PIL import Image

    params = {"num_inference_steps": 2, "seed": 7}
    with ddpm.client() as client:
        first = client.post("/run", json={"params": params})
        assert first.status_code == 200, first.text
        png = base64.b64decode(first.json()["output"])
        assert Image.open(io.BytesIO(png)).size == (8, 8)
        again = client.post("/run", json={"params": params})
        assert again.json()["output"] == first.json()["output"], "the same seed gives the same image"
        raw = client.post("/run", json={"params": params, "json": False})
        assert raw.headers["content-type"] == "image/png"
        assert raw.content == png
        assert client.post("/run", json={"text": "a cat"}).status_code == 422
        assert client.post("/run", json={"params": {"guidance_scale": 3}}).status_code == 422


@pytest.fixture(scope="module")
def speech_recognizer(serve: Callable[..., ServerHandle], models_dir: Path) -> ServerHandle:
    return serve(tiny_builders.wav2vec2_ctc(models_dir / "wav2vec2-ctc"), "automatic-speech-recognition")


def test_speech_recognition_returns_text(speech_recognizer: ServerHandle) -> None:
    with speech_recognizer.client() as client:
        response = client.post("/run", json={"input": b64(wav(rate=22050))})
        assert response.status_code == 200, response.text
        assert response.json()["output"] == tiny_builders.CTC_TRANSCRIPT


def test_object_detection_and_image_features(
    serve: Callable[..., ServerHandle], models_dir: Path, vision_models: dict[str, Path]
) -> None:
    from PIL import Image

    detector = serve(tiny_builders.yolos(models_dir / "yolos"), "object-detection")
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 90, 90)).save(buffer, format="PNG")
    image = base64.b64encode(buffer.getvalue()).decode()
    with detector.client() as client:
        response = client.post("/run", json={"base64": image, "params": {"threshold": 0.0}})
        assert response.status_code == 200, response.text
        detections = response.json()["output"]
        assert detections
        for detection in detections:
            assert detection["label"] in {"cat", "dog"}
            assert set(detection["box"]) == {"xmin", "ymin", "xmax", "ymax"}
    features = serve(vision_models["image-classification"], "image-feature-extraction")
    with features.client() as client:
        response = client.post("/run", json={"base64": image})
        assert response.status_code == 200, response.text
        [vector] = response.json()["output"]
        assert len(vector) == 32
