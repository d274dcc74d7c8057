"""Audio classification and speech recognition, unconditional image generation, object detection and image
features over real HTTP with tiny models."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import pytest
import tiny_builders
from media_samples import b64, wav
from runtime_support import ServerHandle


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
    import torch
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    directory = models_dir / "ddpm"
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=10)).save_pretrained(directory)
    return serve(directory, "unconditional-image-generation")


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
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    torch.manual_seed(0)
    directory = models_dir / "wav2vec2-ctc"
    directory.mkdir()
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{letter: 3 + i for i, letter in enumerate("abcdefghij")}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), pad_token="<pad>", unk_token="<unk>")
    processor = Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(sampling_rate=16000), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
    )
    model = Wav2Vec2ForCTC(config)
    with torch.no_grad():  # every frame says "a": the transcript of any audio is "a" once CTC merges the repeats
        model.lm_head.weight.zero_()
        model.lm_head.bias.fill_(0.0)
        model.lm_head.bias[vocab["a"]] = 10.0
    model.save_pretrained(directory)
    return serve(directory, "automatic-speech-recognition")


def test_speech_recognition_returns_text(speech_recognizer: ServerHandle) -> None:
    with speech_recognizer.client() as client:
        response = client.post("/run", json={"input": b64(wav(rate=22050))})
        assert response.status_code == 200, response.text
        assert response.json()["output"] == "a"


def test_object_detection_and_image_features(
    serve: Callable[..., ServerHandle], models_dir: Path, vision_models: dict[str, Path]
) -> None:
    import torch
    from PIL import Image
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

    torch.manual_seed(0)
    directory = models_dir / "yolos"
    config = YolosConfig(
        image_size=[32, 32],
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_detection_tokens=4,
        id2label={0: "cat", 1: "dog"},
        label2id={"cat": 0, "dog": 1},
    )
    YolosForObjectDetection(config).save_pretrained(directory)
    YolosImageProcessor(size={"shortest_edge": 32, "longest_edge": 32}).save_pretrained(directory)
    detector = serve(directory, "object-detection")
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
