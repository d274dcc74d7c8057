"""Per-request limits (each a setting, each over-limit a 422 naming it), work stopped at its deadline, and internal
errors that answer only a request id; after every bad request the runtime answers the next one."""

from __future__ import annotations

import base64
import io
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runtime_support import ServerHandle

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.generation_params import VLLM, accepted_names, check_generation_params
from modelcluster.runtime.limits import (
    DEFAULT_LIMITS,
    Limits,
    check_diffusion_params,
    check_request_size,
    check_video_sampling,
)
from modelcluster.runtime.loading import LoadProgress
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler
from modelcluster.runtime.tasks.common import stopping_criteria
from modelcluster.runtime.tasks.diffusion import COMMON_PARAMS, DiffusionHandler
from modelcluster.runtime.tasks.multimodal import MediaChatHandler

SMALL = Limits(max_media_blocks=2, max_items=3, max_video_frames=20, max_audio_seconds=1.0, max_new_tokens=100)
STUCK_S = 60.0  # how long the stub models below keep working when nothing stops them


def png_bytes(colour: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    import numpy as np
    import soundfile

    t = np.arange(int(rate * seconds)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def aac_bytes(seconds: float, rate: int = 16000) -> bytes:
    """Audio soundfile cannot read, so it is decoded by PyAV."""
    import av
    import numpy as np

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="adts") as container:
        stream: Any = container.add_stream("aac", rate=rate, layout="mono")
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32")[None, :]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


def mp4_bytes(frames: int) -> bytes:
    """A video whose frame ``i`` has red level ``6 * i``."""
    from PIL import Image

    return media.encode_mp4([Image.new("RGB", (16, 16), (6 * i, 0, 0)) for i in range(frames)])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- pure checks -----------------------------------------------------------------------------------------------


def test_request_size_limits_name_their_setting() -> None:
    check_request_size(Payload(text=["a", "b", "c"], candidate_labels=["x", "y", "z"]), 2, SMALL)
    with pytest.raises(InputError, match=r"`text` items is 4; the limit is 3 \(MAX_ITEMS\)"):
        check_request_size(Payload(text=["a"] * 4), 0, SMALL)
    with pytest.raises(InputError, match=r"`candidate_labels` is 4; the limit is 3 \(MAX_ITEMS\)"):
        check_request_size(Payload(text="a", candidate_labels=["x"] * 4), 0, SMALL)
    with pytest.raises(InputError, match=r"media blocks is 3; the limit is 2 \(MAX_MEDIA_BLOCKS\)"):
        check_request_size(Payload(), 3, SMALL)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_new_tokens": 101}, r"max_new_tokens must be an integer from 1 to 100 \(MAX_NEW_TOKENS\); got 101"),
        ({"max_tokens": 101}, r"max_tokens must be an integer from 1 to 100 \(MAX_NEW_TOKENS\)"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer from 1"),
        ({"max_new_tokens": 5.5}, "max_new_tokens must be an integer"),
        ({"max_new_tokens": True}, "max_new_tokens must be an integer"),
        ({"min_new_tokens": 101}, r"min_new_tokens must be an integer from 0 to 100"),
        ({"min_new_tokens": 9, "max_new_tokens": 5}, r"min_new_tokens \(9\) is larger than max_new_tokens \(5\)"),
        ({"num_beams": 5}, r"num_beams must be an integer from 1 to 4 \(MAX_NUM_BEAMS\); got 5"),
        ({"temperature": 2.5}, r"temperature must be in \[0, 2\]; got 2.5"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"top_p": 0}, r"top_p must be in \(0, 1\]"),
        ({"top_k": -1}, "top_k must be an integer from 0 or more"),
        ({"repetition_penalty": 0}, r"repetition_penalty must be in \(0, 10\]"),
        ({"no_repeat_ngram_size": 65}, "no_repeat_ngram_size must be an integer from 0 to 64"),
        ({"do_sample": "yes"}, "do_sample must be true or false"),
        ({"num_return_sequences": 2}, "unknown param"),
        ({"max_length": 10**6}, "unknown param"),
        ({"streamer": None}, "unknown param"),
        ({"seed": 1}, "unknown param"),  # transformers has no per-request seed
        ({"max_tokens": 5, "max_new_tokens": 5}, "mean the same"),
    ],
)
def test_generation_params_are_an_allowlist_with_bounds(params: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_generation_params(params, SMALL)


@pytest.mark.parametrize("temperature", [0, 0.0, 2.0674859690892005e-277, 9e-6])
def test_a_temperature_too_small_to_divide_by_is_greedy(temperature: float) -> None:
    checked = check_generation_params({"do_sample": True, "temperature": temperature}, DEFAULT_LIMITS)
    assert checked == {"do_sample": False}
    assert check_generation_params({"temperature": 0.5}, DEFAULT_LIMITS) == {"temperature": 0.5}


def test_generation_params_by_engine() -> None:
    good = {"max_tokens": 100, "min_tokens": 2, "temperature": 1, "top_p": 0.9, "top_k": 40, "do_sample": True}
    assert check_generation_params(good, SMALL) == {
        "max_new_tokens": 100,
        "min_new_tokens": 2,
        "temperature": 1.0,
        "top_p": 0.9,
        "top_k": 40,
        "do_sample": True,
    }
    assert check_generation_params({"num_beams": 4, "length_penalty": 1.5}, SMALL)["num_beams"] == 4
    with pytest.raises(InputError, match="num_beams must be 1 here"):
        check_generation_params({"num_beams": 2}, SMALL, streaming=True)
    assert check_generation_params({"num_beams": 1}, SMALL, streaming=True) == {"num_beams": 1}
    vllm = {"seed": 7, "stop": ["\n\n", "END"], "presence_penalty": 0.5, "frequency_penalty": -0.5}
    assert check_generation_params(vllm, SMALL, engine=VLLM) == vllm
    assert check_generation_params({"stop": "END"}, SMALL, engine=VLLM) == {"stop": ["END"]}
    with pytest.raises(InputError, match=r"unknown param.*num_beams"):
        check_generation_params({"num_beams": 2}, SMALL, engine=VLLM)
    with pytest.raises(InputError, match="stop must be a string or a list of 1 to 16"):
        check_generation_params({"stop": ["x"] * 17}, SMALL, engine=VLLM)
    with pytest.raises(InputError, match=r"presence_penalty must be in \[-2, 2\]"):
        check_generation_params({"presence_penalty": 3}, SMALL, engine=VLLM)
    assert "num_return_sequences" not in accepted_names() | accepted_names(VLLM)
    with pytest.raises(InputError, match=r"unknown param\(s\) for chat: use_cache \(accepted: .*max_new_tokens"):
        check_generation_params({"use_cache": False}, SMALL, what="param(s) for chat")


def test_vllm_handler_checks_params_with_its_own_allowlist() -> None:
    from modelcluster.runtime.llm_engine import VllmHandler, to_sampling_params

    handler = VllmHandler("text-generation", engine=None, tokenizer=None, sampling_params_class=dict)
    handler.limits = SMALL
    checked = handler.check_params({"max_tokens": 100, "stop": "END", "seed": 3, "return_full_text": False})
    assert checked == {"max_new_tokens": 100, "stop": ["END"], "seed": 3, "return_full_text": False}
    assert to_sampling_params({k: v for k, v in checked.items() if k != "return_full_text"}) == {
        "max_tokens": 100,
        "stop": ["END"],
        "seed": 3,
    }
    for params, message in [
        ({"max_tokens": 101}, r"max_tokens must be an integer from 1 to 100 \(MAX_NEW_TOKENS\)"),
        ({"num_beams": 2}, r"unknown param\(s\) for text-generation: num_beams"),
        ({"return_full_text": 1}, "return_full_text must be true or false"),
    ]:
        with pytest.raises(InputError, match=message):
            handler.check_params(params)


def test_diffusion_and_video_sampling_limits() -> None:
    check_diffusion_params({"height": 512, "width": 512, "num_inference_steps": 30, "num_frames": 16}, DEFAULT_LIMITS)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"height": 4096}, r"height must be an integer from 8 to 2048 \(MAX_IMAGE_SIDE\); got 4096"),
        ({"width": 4096}, r"width must be an integer from 8 to 2048 \(MAX_IMAGE_SIDE\)"),
        (
            {"num_inference_steps": 1000},
            r"num_inference_steps must be an integer from 1 to 100 \(MAX_DIFFUSION_STEPS\)",
        ),
        ({"num_frames": 1000}, r"num_frames must be an integer from 1 to 128 \(MAX_DIFFUSION_FRAMES\)"),
        ({"guidance_scale": 1e9}, r"guidance_scale must be in \[0, 100\]"),
        ({"negative_prompt": ["x"]}, "negative_prompt must be a string"),
        ({"seed": -1}, "seed must be an integer from 0"),
    ]
    for params, message in cases:
        with pytest.raises(InputError, match=message):
            check_diffusion_params(params, DEFAULT_LIMITS)
    check_video_sampling({"num_frames": 10, "frame_sampling_rate": 2}, 16, SMALL)
    with pytest.raises(
        InputError, match=r"num_frames x frame_sampling_rate is 30; the limit is 20 \(MAX_VIDEO_FRAMES\)"
    ):
        check_video_sampling({"num_frames": 10, "frame_sampling_rate": 3}, 16, SMALL)
    with pytest.raises(InputError, match=r"num_frames must be an integer from 1 to 20 \(MAX_VIDEO_FRAMES\)"):
        check_video_sampling({}, 32, SMALL)  # the model's own frame count counts too


def test_settings_carry_the_limits() -> None:
    settings = RuntimeSettings(model_id="m", task="chat", max_new_tokens=100, max_items=3)
    limits = settings.limits()
    assert (limits.max_new_tokens, limits.max_items) == (100, 3)
    assert RuntimeSettings(model_id="m", task="chat").limits() == DEFAULT_LIMITS


# --- media decoding ----------------------------------------------------------------------------------------------


def test_frame_sampler_spreads_frames_and_holds_few() -> None:
    known: media.FrameSampler[int] = media.FrameSampler(4, total=40)
    unknown: media.FrameSampler[int] = media.FrameSampler(4)
    held = 0
    for index in range(40):
        for sampler in (known, unknown):
            if sampler.wants(index):
                sampler.keep(index)
        held = max(held, len(unknown.kept))
    assert known.chosen() == [0, 10, 20, 30]
    chosen = unknown.chosen()
    assert len(chosen) == 4
    assert chosen[0] == 0
    assert chosen[-1] >= 30
    assert chosen == sorted(chosen)
    assert held < 8  # never more than 2 x the frames asked for
    assert known.done(31) and not unknown.done(39)
    few: media.FrameSampler[int] = media.FrameSampler(16, total=5)
    for index in range(5):
        assert few.wants(index)
        few.keep(index)
    assert few.chosen() == [0, 1, 2, 3, 4]


def test_video_frames_are_sampled_while_decoding_and_bounded() -> None:
    video = mp4_bytes(40)
    frames = media.load_video_frames(video, 4, 100)
    reds = [frame.getpixel((8, 8))[0] for frame in frames]  # type: ignore[index]
    assert [round(red / 60) for red in reds] == [0, 1, 2, 3]  # frames 0, 10, 20, 30
    with pytest.raises(InputError, match=r"video frames is 40; the limit is 20 \(MAX_VIDEO_FRAMES\)"):
        media.load_video_frames(video, 4, 20)
    media.probe_video(video, 40)
    with pytest.raises(InputError, match=r"\(MAX_VIDEO_FRAMES\)"):
        media.probe_video(video, 39)
    with pytest.raises(InputError, match="not a video"):
        media.probe_video(b"plain text, not a video", 40)


def test_audio_longer_than_the_limit_is_refused() -> None:
    assert media.load_audio(wav_bytes(0.5), 16000, 1.0).shape == (8000,)
    with pytest.raises(InputError, match=r"audio length in seconds is 2; the limit is 1 \(MAX_AUDIO_SECONDS\)"):
        media.load_audio(wav_bytes(2.0), 16000, 1.0)
    assert media.load_audio(aac_bytes(0.5), 16000, 1.0).size > 0
    with pytest.raises(InputError, match=r"\(MAX_AUDIO_SECONDS\)"):
        media.load_audio(aac_bytes(2.0), 16000, 1.0)


def test_stopping_criteria_end_a_real_generation(generation_models: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(generation_models["causal"])
    model = AutoModelForCausalLM.from_pretrained(generation_models["causal"]).eval()
    encoded = tokenizer("the cat", return_tensors="pt")
    checks = {"count": 0}

    def stop_after_five() -> bool:
        checks["count"] += 1
        return checks["count"] > 5

    with torch.inference_mode():
        output = model.generate(
            **encoded,
            min_new_tokens=500,
            max_new_tokens=500,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
            stopping_criteria=stopping_criteria(stop_after_five),
        )
    assert output.shape[-1] - encoded["input_ids"].shape[-1] <= 7


# --- over HTTP: stub models behind the real app -------------------------------------------------------------------


class StubChatModel:
    """Stands in for a media-chat model's generate(): "slow" runs until its stopping criteria say stop (or 60 s)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()

    def generate(self, conversation: list[dict[str, Any]], generate_kwargs: dict[str, Any]) -> str:
        import torch

        prompt = "".join(block.get("text", "") for message in conversation for block in message["content"])
        if prompt == "boom":
            raise RuntimeError("secret detail in /models/weights.bin")
        if prompt == "slow":
            criteria = generate_kwargs["stopping_criteria"]
            ids, deadline = torch.zeros((1, 1), dtype=torch.long), time.monotonic() + STUCK_S
            while not bool(criteria(ids, None).all()) and time.monotonic() < deadline:
                time.sleep(0.01)  # one "token"
            self.stopped.set()
            return "partial"
        return "ok"


class StubChatHandler(MediaChatHandler):
    """The real media-chat handler (limits, media decoding, stopping) around the stub model."""

    def __init__(self, task: str, stub: StubChatModel) -> None:
        super().__init__(task, model=None, processor=None, device="cpu")
        self.stub = stub

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        if payload.messages and payload.messages[0].content == "crash":
            raise RuntimeError("secret state of the handler")
        return super().prepare(payload, media_blobs)

    def answer(self, conversation: list[dict[str, Any]], generate_kwargs: dict[str, Any]) -> str:
        return self.stub.generate(conversation, generate_kwargs)


def chat_loader(stub: StubChatModel) -> Callable[[RuntimeSettings, LoadProgress], Handler]:
    return lambda settings, progress: StubChatHandler(settings.task, stub)


def blocks(*items: tuple[str, bytes], text: str = "what is this?") -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content += [{"type": kind, "base64": b64(data)} for kind, data in items]
    return {"messages": [{"role": "user", "content": content}]}


@pytest.fixture(scope="module")
def chat_model() -> StubChatModel:
    return StubChatModel()


@pytest.fixture(scope="module")
def media_chat(serve: Callable[..., ServerHandle], chat_model: StubChatModel) -> ServerHandle:
    return serve(
        "stub-media-chat",
        "image-text-to-text",
        loader=chat_loader(chat_model),
        max_media_blocks=2,
        max_video_frames=20,
        max_audio_seconds=1.0,
        max_new_tokens=100,
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (blocks(*[("image", png_bytes())] * 3), r"media blocks is 3; the limit is 2 \(MAX_MEDIA_BLOCKS\)"),
        (blocks(("video", mp4_bytes(40))), r"video frames is 40; the limit is 20 \(MAX_VIDEO_FRAMES\)"),
        (blocks(("audio", wav_bytes(2.0))), r"audio length in seconds is 2; the limit is 1 \(MAX_AUDIO_SECONDS\)"),
        (
            {**blocks(("image", png_bytes())), "params": {"max_new_tokens": 101}},
            r"max_new_tokens must be an integer from 1 to 100 \(MAX_NEW_TOKENS\)",
        ),
        (
            {**blocks(("image", png_bytes())), "params": {"generate_kwargs": {"num_beams": 9}}},
            r"num_beams must be an integer from 1 to 4 \(MAX_NUM_BEAMS\)",
        ),
        (
            {**blocks(("image", png_bytes())), "params": {"generate_kwargs": {"num_return_sequences": 8}}},
            r"unknown generate_kwargs key\(s\): num_return_sequences",
        ),
    ],
)
def test_media_limits_over_http(media_chat: ServerHandle, body: dict[str, Any], message: str) -> None:
    with media_chat.client() as client:
        refused = client.post("/run", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["output"] is None
        assert re.search(message, refused.json()["error"]), refused.json()["error"]
        within = blocks(("image", png_bytes()), ("video", mp4_bytes(20)))
        answered = client.post("/run", json={**within, "params": {"generate_kwargs": {"num_beams": 2}}})
        assert answered.status_code == 200, answered.text
        assert answered.json()["output"] == {"role": "assistant", "content": "ok"}


def test_internal_errors_answer_only_a_request_id(media_chat: ServerHandle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="modelcluster.runtime.app")
    with media_chat.client() as client:
        failed = client.post("/run", json=blocks(text="boom"))
        assert failed.status_code == 500
        request_id = failed.headers["x-request-id"]
        assert failed.json() == {"error": f"internal error (request {request_id})", "output": None}
        crashed = client.post(
            "/run", json={"messages": [{"role": "user", "content": "crash"}]}, headers={"X-Request-Id": "trace-42"}
        )
        assert crashed.status_code == 500
        assert crashed.json() == {"error": "internal error (request trace-42)", "output": None}
        assert crashed.headers["x-request-id"] == "trace-42"
        odd = client.post("/run", json=blocks(text="boom"), headers={"X-Request-Id": "not a token; x"})
        assert "not a token" not in odd.json()["error"]
        assert client.post("/run", json=blocks(("image", png_bytes()))).status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"internal error (request {request_id}): RuntimeError: secret detail in /models/weights.bin" in logged
    assert "internal error (request trace-42): RuntimeError: secret state of the handler" in logged
    assert media_chat.metric("modelcluster_runtime_errors_total", 'kind="inference"') >= 1
    assert media_chat.metric("modelcluster_runtime_errors_total", 'kind="internal"') >= 1


def test_a_batch_job_past_its_deadline_is_stopped(serve: Callable[..., ServerHandle]) -> None:
    """The model stops at the deadline: the 504 comes at once and the next request runs right after it."""
    stub = StubChatModel()
    server = serve("stub-media-chat", "image-text-to-text", loader=chat_loader(stub), request_timeout_s=0.5)
    with server.client() as client:
        started = time.monotonic()
        slow = client.post("/run", json=blocks(text="slow"))
        assert slow.status_code == 504
        assert slow.json() == {"error": "the request took longer than 0.5s", "output": None}
        quick = client.post("/run", json=blocks(text="quick"))
        assert quick.status_code == 200, quick.text
        assert time.monotonic() - started < 10  # far below the minute the stub works when nothing stops it
    assert stub.stopped.is_set()


class StubDiffusionPipe:
    """Stands in for a diffusers pipeline: one step per 10 ms, ``callback_on_step_end`` after each."""

    def __init__(self) -> None:
        self.steps_run = 0

    def __call__(
        self,
        prompt: str,
        num_inference_steps: int = 4,
        callback_on_step_end: Callable[..., dict[str, Any]] | None = None,
        **params: Any,
    ) -> Any:
        from types import SimpleNamespace

        from PIL import Image

        steps = int(STUCK_S / 0.01) if prompt == "slow" else num_inference_steps
        for step in range(steps):
            time.sleep(0.01)
            self.steps_run += 1
            if callback_on_step_end is not None:
                callback_on_step_end(self, step, step, {})
        size = (int(params.get("width", 8)), int(params.get("height", 8)))
        return SimpleNamespace(images=[Image.new("RGB", size)])


def test_diffusion_limits_and_deadline(serve: Callable[..., ServerHandle]) -> None:
    pipe = StubDiffusionPipe()

    def loader(settings: RuntimeSettings, progress: LoadProgress) -> Handler:
        return DiffusionHandler(settings.task, pipe, "cpu", COMMON_PARAMS)

    server = serve(
        "stub-diffusion",
        "text-to-image",
        loader=loader,
        request_timeout_s=0.5,
        max_image_side=64,
        max_diffusion_steps=10,
    )
    with server.client() as client:
        for params, message in [
            ({"height": 128}, "height must be an integer from 8 to 64 (MAX_IMAGE_SIDE); got 128"),
            ({"num_inference_steps": 11}, "num_inference_steps must be an integer from 1 to 10 (MAX_DIFFUSION_STEPS)"),
        ]:
            refused = client.post("/run", json={"text": "a cat", "params": params})
            assert refused.status_code == 422
            assert message in refused.json()["error"]
        started = time.monotonic()
        slow = client.post("/run", json={"text": "slow"})
        assert slow.status_code == 504
        image = client.post("/run", json={"text": "a cat", "params": {"width": 64, "num_inference_steps": 3}})
        assert image.status_code == 200, image.text
        assert time.monotonic() - started < 10
        png = base64.b64decode(image.json()["output"])
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size == (64, 8)
    assert pipe.steps_run < STUCK_S / 0.01 / 2


def test_text_items_limit(serve: Callable[..., ServerHandle], minilm_dir: Path) -> None:
    server = serve(minilm_dir, "feature-extraction", max_items=3)
    with server.client() as client:
        refused = client.post("/run", json={"text": ["a", "b", "c", "d"]})
        assert refused.status_code == 422
        assert refused.json()["error"] == "the number of `text` items is 4; the limit is 3 (MAX_ITEMS)"
        answered = client.post("/run", json={"text": ["a", "b", "c"]})
        assert answered.status_code == 200
        assert len(answered.json()["output"]) == 3


def test_generation_limits_over_http(serve: Callable[..., ServerHandle], generation_models: dict[str, Path]) -> None:
    server = serve(generation_models["causal"], "text-generation", max_new_tokens=100)
    with server.client() as client:
        for params, message in [
            ({"max_new_tokens": 101}, "max_new_tokens must be an integer from 1 to 100 (MAX_NEW_TOKENS); got 101"),
            ({"max_tokens": 5000}, "max_tokens must be an integer from 1 to 100 (MAX_NEW_TOKENS)"),
            ({"num_beams": 2}, "num_beams must be 1 here"),
            ({"temperature": 3}, "temperature must be in [0, 2]; got 3"),
            ({"num_return_sequences": 3}, "unknown param(s) for text-generation: num_return_sequences"),
            ({"return_full_text": "no"}, "return_full_text must be true or false"),
        ]:
            refused = client.post("/run", json={"text": "the cat", "params": params})
            assert refused.status_code == 422, params
            assert message in refused.json()["error"]
            answered = client.post("/run", json={"text": "the cat", "params": {"max_tokens": 100, "num_beams": 1}})
            assert answered.status_code == 200, answered.text
            assert int(answered.headers["x-completion-tokens"]) <= 100
