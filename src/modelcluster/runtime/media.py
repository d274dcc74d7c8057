"""Media in (url or base64 -> bytes -> image, audio, video frames) and out (png, wav, mp4 bytes)."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import AsyncIterator
from fractions import Fraction
from importlib import import_module
from typing import TYPE_CHECKING, Any

import httpx

from modelcluster.runtime.errors import InputError, PayloadTooLarge

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image


def decode_base64(data: str, max_bytes: int) -> bytes:
    """Decode plain or data-URI base64; the estimate is checked before decoding."""
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    data = data.strip()
    if len(data) * 3 // 4 > max_bytes:
        raise PayloadTooLarge(f"base64 media is larger than {max_bytes} bytes")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"`base64` could not be decoded: {exc}") from exc
    if not decoded:
        raise InputError("`base64` is empty")
    return decoded


async def collect_bytes(chunks: AsyncIterator[bytes], limit: int, what: str) -> bytes:
    """Join a byte stream, answering 413 as soon as it grows past ``limit``."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"{what} is larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def fetch_url(client: httpx.AsyncClient, url: str, max_bytes: int) -> bytes:
    """Download media, refusing non-http schemes, error statuses and bodies over ``max_bytes``."""
    if not url.startswith(("http://", "https://")):
        raise InputError("`url` must be an http or https URL")
    try:
        async with client.stream("GET", url, follow_redirects=True) as response:
            if response.status_code >= 400:
                raise InputError(f"`url` answered HTTP {response.status_code}")
            data = await collect_bytes(response.aiter_bytes(), max_bytes, "media at `url`")
    except httpx.HTTPError as exc:
        raise InputError(f"`url` could not be fetched: {type(exc).__name__}: {exc}") from exc
    if not data:
        raise InputError("`url` returned an empty body")
    return data


def load_image(data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError("the media is not an image that can be decoded") from exc
    return image.convert("RGB")


def load_audio(data: bytes, sampling_rate: int) -> npt.NDArray[np.float32]:
    """Decode audio to mono float32 at ``sampling_rate`` (soundfile first, then PyAV for mp3/aac/...)."""
    import numpy as np

    soundfile: Any = import_module("soundfile")
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        mono, rate = _decode_audio_av(data)
    if mono.size == 0:
        raise InputError("the audio has no samples")
    return resample(mono.astype(np.float32), int(rate), sampling_rate)


def _decode_audio_av(data: bytes) -> tuple[npt.NDArray[np.float32], int]:
    import av
    import numpy as np

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise InputError("the media is not audio that can be decoded")
            stream = container.streams.audio[0]
            rate = int(stream.rate or 16000)
            parts = [frame.to_ndarray().astype(np.float32) for frame in container.decode(stream)]
    except av.FFmpegError as exc:
        raise InputError("the media is not audio that can be decoded") from exc
    if not parts:
        raise InputError("the audio has no samples")
    joined = np.concatenate([p if p.ndim == 2 else p[None, :] for p in parts], axis=1)
    return joined.mean(axis=0), rate


def resample(samples: npt.NDArray[np.float32], rate: int, target: int) -> npt.NDArray[np.float32]:
    import numpy as np

    if rate == target:
        return samples
    duration = samples.shape[0] / rate
    count = max(1, round(duration * target))
    positions = np.linspace(0, samples.shape[0] - 1, count)
    return np.interp(positions, np.arange(samples.shape[0]), samples).astype(np.float32)


def load_video_frames(data: bytes, max_frames: int) -> list[Image.Image]:
    """Decode up to ``max_frames`` frames spread evenly over the video."""
    import av

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InputError("the media is not a video that can be decoded")
            frames = [frame.to_image() for frame in container.decode(video=0)]
    except av.FFmpegError as exc:
        raise InputError("the media is not a video that can be decoded") from exc
    if not frames:
        raise InputError("the video has no frames")
    if len(frames) <= max_frames:
        return frames
    step = len(frames) / max_frames
    return [frames[int(i * step)] for i in range(max_frames)]


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_wav(samples: Any, sampling_rate: int) -> bytes:
    import numpy as np

    soundfile: Any = import_module("soundfile")
    array = np.asarray(samples, dtype=np.float32).squeeze()
    if array.ndim > 1:  # (channels, samples) -> (samples, channels)
        array = array.T
    buffer = io.BytesIO()
    soundfile.write(buffer, array, sampling_rate, format="WAV")
    return buffer.getvalue()


def encode_mp4(frames: list[Image.Image], fps: int = 8) -> bytes:
    import av

    video_frame: Any = av.VideoFrame
    buffer = io.BytesIO()
    width, height = frames[0].size
    width, height = width - width % 2, height - height % 2
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for image in frames:
            frame = video_frame.from_image(image.convert("RGB").crop((0, 0, width, height)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def to_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
