"""Hostile inputs to the model runtime: decompression bombs (images, audio), model ids that name host paths, media
URLs that lead to addresses that are not globally routable.

Bombs go through the runtime's real HTTP app: each answers 422 naming its limit, before it is decoded (the
process's RSS does not jump), and the server keeps answering normal requests.
"""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import psutil
import pytest
from runtime_support import ServerHandle

from modelcluster.api.errors import InputError
from modelcluster.runtime import media
from modelcluster.runtime.limits import DEFAULT_LIMITS, SETTING_NAMES
from modelcluster.runtime.loading import LoadProgress, ModelIdError, load_handler, local_model_dir
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.urlfetch import UrlPolicy, address_refusal

from support import eventually

# PIL warns (DecompressionBombWarning) about the images between one and two limits, which are refused anyway.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

#: What a bomb may add to the process's RSS: decoding any of them would take hundreds of MiB to gigabytes.
RSS_SLACK = 96 * 1024 * 1024


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes that declares ``width`` x ``height`` RGB pixels (its data is a stub)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def png(size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def wav(seconds: float = 0.5, rate: int = 8000, channels: int = 1) -> bytes:
    import numpy as np
    import soundfile

    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32")
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([tone] * channels, axis=1), rate, format="WAV")
    return buffer.getvalue()


def silent_flac(seconds: int, rate: int, channels: int) -> bytes:
    """Silence compresses to almost nothing: 80 s of 8 channels at 96 kHz (61 M samples) is about 60 KB."""
    import numpy as np
    import soundfile

    buffer = io.BytesIO()
    block = np.zeros((rate, channels), dtype=np.int16)
    with soundfile.SoundFile(buffer, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as out:
        for _ in range(seconds):
            out.write(block)
    return buffer.getvalue()


class _Unseekable(io.RawIOBase):
    """A write-only stream: the muxer cannot go back to write the length into the header."""

    def __init__(self) -> None:
        self.buffer = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self.buffer.write(data)


def matroska_aac(frames: int, declare_length: bool) -> bytes:
    """Silent stereo AAC at 48 kHz, ``frames`` x 1024 samples a channel, in Matroska (PyAV decodes it, soundfile
    cannot); without ``declare_length`` no header says how long it is."""
    import av

    target: Any = io.BytesIO() if declare_length else _Unseekable()
    container: Any
    with av.open(target, "w", format="matroska") as container:
        stream = container.add_stream("aac", rate=48000, layout="stereo")
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        frame.sample_rate = 48000
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        for index in range(frames):
            frame.pts = index * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data: bytes = target.getvalue() if declare_length else target.buffer.getvalue()
    return data


def rss() -> int:
    value: int = psutil.Process().memory_info().rss
    return value


# --- images -------------------------------------------------------------------------------------------------


def test_image_pixels_are_checked_from_the_header() -> None:
    media.check_image_pixels((200, 200), 40_000)
    with pytest.raises(
        InputError, match=r"^the image is 201x200 pixels; the limit is 40000 pixels \(MAX_IMAGE_PIXELS\)$"
    ):
        media.check_image_pixels((201, 200), 40_000)


def test_an_image_over_the_limit_is_refused_before_decoding() -> None:
    assert media.load_image(png((40, 30)), max_pixels=1200).size == (40, 30)
    with pytest.raises(InputError, match=r"the image is 40x30 pixels; the limit is 1199 pixels \(MAX_IMAGE_PIXELS\)"):
        media.load_image(png((40, 30)), max_pixels=1199)
    # a header-only image: decoding it would fail, so the refusal comes from the header
    with pytest.raises(InputError, match=r"the image is 8000x6000 pixels; the limit is 40000000 pixels"):
        media.load_image(png_header(8000, 6000))


def test_pils_own_bomb_error_and_warning_answer_422() -> None:
    from PIL import Image

    # PIL raises DecompressionBombError itself beyond twice its limit, inside Image.open
    with pytest.raises(InputError, match=r"the image is 2500000000 pixels; the limit is 40000000 pixels") as caught:
        media.load_image(png_header(50_000, 50_000))
    assert isinstance(caught.value.__cause__, Image.DecompressionBombError)
    assert DEFAULT_LIMITS.max_image_pixels == Image.MAX_IMAGE_PIXELS
    # where warnings are errors, its warning (between one and two limits) is raised inside Image.open too
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(InputError, match=r"the image is 60000 pixels; the limit is 50000 pixels") as warned:
            media.load_image(png_header(300, 200), max_pixels=50_000)
    assert isinstance(warned.value.__cause__, Image.DecompressionBombWarning)
    media.load_image(png((8, 8)))  # the default bound again, for the rest of the process


# --- audio --------------------------------------------------------------------------------------------------


def test_audio_size_check() -> None:
    media.check_audio_size(8000, 8000, 2, 1.0, 16000)
    with pytest.raises(InputError, match=r"the audio samples \(frames x channels\) is 16002; the limit is 16000 "):
        media.check_audio_size(8001, 8000, 2, 2.0, 16000)
    with pytest.raises(InputError, match=r"the audio length in seconds is 2; the limit is 1 \(MAX_AUDIO_SECONDS\)"):
        media.check_audio_size(16000, 8000, 1, 1.0, 10**9)


def test_audio_samples_count_every_channel() -> None:
    assert media.load_audio(wav(1.0, 8000, 2), 16000, max_samples=16000).shape == (16000,)
    with pytest.raises(InputError, match=r"is 16000; the limit is 15999 \(MAX_AUDIO_SAMPLES\)"):
        media.load_audio(wav(1.0, 8000, 2), 16000, max_samples=15999)


def test_a_compressed_audio_bomb_is_refused_from_its_header() -> None:
    bomb = silent_flac(80, 96000, 8)
    assert len(bomb) < 1024 * 1024
    before = rss()
    with pytest.raises(InputError, match=r"the audio samples \(frames x channels\) is 61440000; the limit is 57600000"):
        media.load_audio(bomb, 16000)
    assert rss() - before < RSS_SLACK


def test_pyav_audio_is_bounded_by_its_header_and_while_decoding() -> None:
    declared = matroska_aac(20, declare_length=True)  # 20480 frames x 2 channels
    assert media.load_audio(declared, 16000, max_samples=60_000).size > 0
    with pytest.raises(InputError, match=r"^the audio samples \(frames x channels\) is \d+; the limit is 10000"):
        media.load_audio(declared, 16000, max_samples=10_000)
    undeclared = matroska_aac(20, declare_length=False)
    with pytest.raises(
        InputError, match=r"^the decoded audio samples \(frames x channels\) is \d+; the limit is 10000"
    ):
        media.load_audio(undeclared, 16000, max_samples=10_000)
    with pytest.raises(InputError, match=r"length in seconds is 0\.\d; the limit is 0\.1 \(MAX_AUDIO_SECONDS\)"):
        media.load_audio(undeclared, 16000, max_seconds=0.1)


# --- the bombs over HTTP ------------------------------------------------------------------------------------


def _assert_healthy(server: ServerHandle, normal: dict[str, Any]) -> None:
    with server.client() as client:
        assert client.get("/health").status_code == 200
        response = client.post("/run", json=normal)
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("bomb", "message"),
    [
        (png_header(50_000, 50_000), "the image is 2500000000 pixels; the limit is 40000000 pixels (MAX_IMAGE_PIXELS)"),
        (png_header(8000, 6000), "the image is 8000x6000 pixels; the limit is 40000000 pixels (MAX_IMAGE_PIXELS)"),
    ],
    ids=["pil-bomb-error", "header-check"],
)
def test_image_bombs_answer_422_and_the_runtime_keeps_serving(
    vit_server: ServerHandle, bomb: bytes, message: str
) -> None:
    normal = {"base64": b64(png())}
    _assert_healthy(vit_server, normal)
    before = rss()
    with vit_server.client() as client:
        for _ in range(3):
            response = client.post("/run", json={"base64": b64(bomb)})
            assert response.status_code == 422, response.text
            assert response.json() == {"error": message, "output": None}
    assert rss() - before < RSS_SLACK
    _assert_healthy(vit_server, normal)


def test_an_audio_bomb_answers_422_and_the_runtime_keeps_serving(audio_server: ServerHandle) -> None:
    normal = {"base64": b64(wav())}
    _assert_healthy(audio_server, normal)
    bomb = b64(silent_flac(80, 96000, 8))
    before = rss()
    with audio_server.client() as client:
        for _ in range(3):
            response = client.post("/run", json={"base64": bomb})
            assert response.status_code == 422, response.text
            error = response.json()["error"]
            assert (
                error == "the audio samples (frames x channels) is 61440000; the limit is 57600000 (MAX_AUDIO_SAMPLES)"
            )
    assert rss() - before < RSS_SLACK
    _assert_healthy(audio_server, normal)


def test_media_limits_are_settings() -> None:
    settings = RuntimeSettings(
        model_id="org/model", task="image-classification", max_image_pixels=10, max_audio_samples=20
    )
    assert (settings.limits().max_image_pixels, settings.limits().max_audio_samples) == (10, 20)
    assert SETTING_NAMES["max_image_pixels"] == "MAX_IMAGE_PIXELS"
    assert SETTING_NAMES["max_audio_samples"] == "MAX_AUDIO_SAMPLES"
    assert DEFAULT_LIMITS.max_audio_samples == 600 * 48_000 * 2


# --- model ids ----------------------------------------------------------------------------------------------


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The working directory is ``/``, where ``proc/self`` is a directory."""
    monkeypatch.chdir("/")
    monkeypatch.delenv("HF_HOME", raising=False)
    yield


def _settings(model_id: str, **overrides: Any) -> RuntimeSettings:
    return RuntimeSettings(model_id=model_id, task="text-classification", **overrides)


@pytest.mark.usefixtures("at_root")
def test_a_hub_shaped_model_id_is_never_a_local_path() -> None:
    assert Path("proc/self").is_dir()
    assert local_model_dir(_settings("proc/self")) is None
    assert local_model_dir(_settings("sentence-transformers/all-MiniLM-L6-v2")) is None


@pytest.mark.usefixtures("at_root")
@pytest.mark.parametrize("model_id", ["/proc/self", "/etc", "/", "etc", "./proc/self", "../../etc", "~", " ", "a/../b"])
def test_paths_outside_the_model_roots_are_refused(model_id: str, tmp_path: Path) -> None:
    with pytest.raises(
        ModelIdError, match=r"MODEL_ID must be a hub id \(org/name\) or a model directory under a model root"
    ):
        local_model_dir(_settings(model_id, cache_dir=tmp_path / "cache", model_dirs=[tmp_path / "models"]))


def test_model_roots_admit_the_directories_under_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HOME", raising=False)
    cache, home, models, outside = (tmp_path / name for name in ("cache", "home", "models", "outside"))
    for directory in (cache / "snap", home / "hub" / "snap", models / "mine", outside):
        directory.mkdir(parents=True)
    settings = _settings(str(models / "mine"), cache_dir=cache, hf_home=home, model_dirs=[models])
    assert settings.model_roots() == [cache.resolve(), home.resolve(), models.resolve()]
    assert local_model_dir(settings) == (models / "mine").resolve()
    assert local_model_dir(_settings(str(cache / "snap"), cache_dir=cache)) == (cache / "snap").resolve()
    assert local_model_dir(_settings(str(home / "hub" / "snap"), hf_home=home)) == (home / "hub" / "snap").resolve()
    monkeypatch.chdir(models)
    assert local_model_dir(_settings("mine", model_dirs=[models])) == (models / "mine").resolve()
    with pytest.raises(ModelIdError, match="is not under one"):
        local_model_dir(_settings(str(outside), cache_dir=cache, hf_home=home, model_dirs=[models]))
    with pytest.raises(ModelIdError, match="is not under one"):  # `..` is followed before the check
        local_model_dir(_settings(str(models / ".." / "outside"), model_dirs=[models]))
    with pytest.raises(ModelIdError, match="is not a directory"):
        local_model_dir(_settings(str(models / "missing"), model_dirs=[models]))
    with pytest.raises(ModelIdError, match=r"MODEL_DIRS: none configured"):
        local_model_dir(_settings(str(models / "mine")))


def test_a_symlink_out_of_a_model_root_is_refused(tmp_path: Path) -> None:
    models, outside = tmp_path / "models", tmp_path / "outside"
    models.mkdir()
    outside.mkdir()
    (models / "escape").symlink_to(outside, target_is_directory=True)
    (models / "proc").symlink_to("/proc/self", target_is_directory=True)
    (models / "inner").mkdir()
    (models / "alias").symlink_to(models / "inner", target_is_directory=True)
    for name in ("escape", "proc"):
        with pytest.raises(ModelIdError, match="is not under one"):
            local_model_dir(_settings(str(models / name), model_dirs=[models]))
    assert local_model_dir(_settings(str(models / "alias"), model_dirs=[models])) == (models / "inner").resolve()


def test_model_dirs_setting_is_comma_separated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_DIRS", f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    assert RuntimeSettings(model_id="org/m", task="chat").model_dirs == [tmp_path / "a", tmp_path / "b"]


def test_the_load_fails_on_a_refused_model_id(at_root: None) -> None:
    with pytest.raises(ModelIdError, match=r"'/proc/self' is not under one"):
        load_handler(_settings("/proc/self"), LoadProgress())


def test_a_runtime_for_a_refused_model_id_reports_why(start_runtime: Callable[..., ServerHandle]) -> None:
    server = start_runtime("/etc", "text-classification", wait_ready=False)
    with server.client() as client:
        eventually(lambda: client.get("/status").json()["output"]["status"] == "failed", what="load failure")
        health = client.get("/health")
        assert health.status_code == 503
        error = health.json()["error"]
        assert error.startswith("Fatal, model failed to load: ModelIdError: MODEL_ID must be a hub id (org/name)")
        assert "'/etc' is not under one" in error


# --- media URL addresses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "fec0::1",  # site-local (deprecated)
        "fec0:1234::5",
        "fc00::1",  # unique local
        "fe80::1",  # link-local
        "::ffff:10.0.0.1",  # IPv4-mapped private
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:6440:1::1",  # 6to4 of 100.64.0.1
        "100.64.0.1",  # shared address space
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "127.0.0.1",
        "::1",
        "192.0.0.8",
        "198.18.0.1",
        "255.255.255.255",
        "2001:db8::1",  # documentation
        "3fff::1",  # documentation (RFC 9637)
        "5f00::1",  # SRv6 SIDs
    ],
)
def test_non_global_addresses_are_refused(address: str) -> None:
    reason = address_refusal(ip_address(address), "media.example.com", UrlPolicy())
    assert reason is not None
    assert address not in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "1.1.1.1", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_global_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ip_address(address), "media.example.com", UrlPolicy()) is None
