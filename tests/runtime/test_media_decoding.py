"""Media decoding keeps its bounds and its meaning: frame sizes before decoding, only raster image formats, and
audio in any sample layout decoded to the same mono signal."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from modelcluster.api.errors import InputError
from modelcluster.runtime import media


def tone(rate: int, seconds: float) -> np.ndarray[Any, np.dtype[np.float32]]:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def matroska_pcm(samples: np.ndarray[Any, np.dtype[np.float32]], rate: int, channels: int) -> bytes:
    """Interleaved (packed) 16-bit PCM in Matroska: soundfile cannot read it, so PyAV decodes it."""
    import av

    interleaved = np.repeat((samples * 32767).astype(np.int16), channels)[None, :]
    layout = "stereo" if channels == 2 else "mono"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska") as container:
        stream: Any = container.add_stream("pcm_s16le", rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize("channels", [1, 2])
def test_packed_pcm_decodes_to_the_same_mono_signal(channels: int) -> None:
    rate = 16000
    source = tone(rate, 0.5)
    decoded = media.load_audio(matroska_pcm(source, rate, channels), rate)
    assert decoded.shape == source.shape  # not channels x longer: the samples are not interleaved into one line
    assert float(np.max(np.abs(decoded))) <= 1.0  # float in [-1, 1], not raw 16-bit integers
    assert np.allclose(decoded, source, atol=1e-3)


def video(width: int, height: int, frames: int = 2) -> bytes:
    from PIL import Image

    return media.encode_mp4([Image.new("RGB", (width, height), (40 * i, 0, 0)) for i in range(frames)])


def test_video_frames_over_the_pixel_limit_answer_422_before_decoding() -> None:
    data = video(64, 32)
    assert len(media.load_video_frames(data, 2, max_pixels=64 * 32)) == 2
    media.probe_video(data, max_pixels=64 * 32)
    with pytest.raises(InputError, match=r"64x32 \(a video frame\).*limit is 2047 pixels"):
        media.load_video_frames(data, 2, max_pixels=64 * 32 - 1)
    with pytest.raises(InputError, match="a video frame"):
        media.probe_video(data, max_pixels=64 * 32 - 1)


def eps_bytes() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\nshowpage\n"


@pytest.mark.parametrize("data", [eps_bytes(), b"P6\n8 8\n255\n" + bytes(8 * 8 * 3)], ids=["eps", "ppm"])
def test_only_raster_web_formats_are_opened(data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin, Image, PpmImagePlugin

    Image.open(io.BytesIO(data))  # PIL itself opens both (EPS loads through Ghostscript)
    plugins_run: list[str] = []
    for plugin in (EpsImagePlugin.EpsImageFile, PpmImagePlugin.PpmImageFile):
        monkeypatch.setattr(plugin, "_open", lambda self, name=plugin.format: plugins_run.append(name))
    with pytest.raises(InputError, match="not an image that can be decoded"):
        media.load_image(data)
    assert plugins_run == []  # refused before PIL hands the bytes to the plugin


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_common_formats_still_open(fmt: str) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format=fmt)
    assert media.load_image(buffer.getvalue()).size == (8, 8)
