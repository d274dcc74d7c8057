"""Media in (url or base64 -> bytes -> image, audio, video frames) and out (png, wav, mp4 bytes)."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import AsyncIterator
from fractions import Fraction
from importlib import import_module
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelcluster.api.errors import InputError, PayloadTooLarge
from modelcluster.runtime.limits import DEFAULT_LIMITS, over_limit

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

T = TypeVar("T")


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


def load_image(data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError("the media is not an image that can be decoded") from exc
    return image.convert("RGB")


def load_audio(
    data: bytes, sampling_rate: int, max_seconds: float = DEFAULT_LIMITS.max_audio_seconds
) -> npt.NDArray[np.float32]:
    """Decode audio to mono float32 at ``sampling_rate`` (soundfile first, then PyAV for mp3/aac/...).

    Audio longer than ``max_seconds`` answers 422, found from the header when it says, else while decoding.
    """
    import numpy as np

    soundfile: Any = import_module("soundfile")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate = int(sound.samplerate)
            _check_audio_seconds(sound.frames / rate if rate else 0.0, max_seconds)
            samples = sound.read(dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        mono, rate = _decode_audio_av(data, max_seconds)
    if mono.size == 0:
        raise InputError("the audio has no samples")
    return resample(mono.astype(np.float32), int(rate), sampling_rate)


def _check_audio_seconds(seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise over_limit("the audio length in seconds", round(seconds, 1), "max_audio_seconds", max_seconds)


def _decode_audio_av(data: bytes, max_seconds: float) -> tuple[npt.NDArray[np.float32], int]:
    import av
    import numpy as np

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise InputError("the media is not audio that can be decoded")
            stream = container.streams.audio[0]
            rate = int(stream.rate or 16000)
            if stream.duration is not None and stream.time_base is not None:
                _check_audio_seconds(float(stream.duration * stream.time_base), max_seconds)
            parts = []
            decoded = 0
            for frame in container.decode(stream):
                decoded += frame.samples
                _check_audio_seconds(decoded / rate, max_seconds)
                parts.append(frame.to_ndarray().astype(np.float32))
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


class FrameSampler(Generic[T]):
    """Chooses ``count`` frames spread evenly over a video while it decodes, holding at most ``2 * count``.

    With the frame total known the chosen indices are computed up front. Otherwise every ``stride``-th frame is
    kept and, whenever ``2 * count`` are held, every other one is dropped and the stride doubles; the ``count``
    returned are spread over those.
    """

    def __init__(self, count: int, total: int | None = None) -> None:
        self.count = count
        self.targets = {i * total // count for i in range(count)} if total and total > count else None
        self.stride = 1
        self.kept: list[T] = []

    def wants(self, index: int) -> bool:
        if self.targets is not None:
            return index in self.targets
        return index % self.stride == 0

    def done(self, index: int) -> bool:
        """Whether no frame from ``index`` on can be chosen."""
        return self.targets is not None and index > max(self.targets)

    def keep(self, item: T) -> None:
        self.kept.append(item)
        if self.targets is None and len(self.kept) >= 2 * self.count:
            self.kept, self.stride = self.kept[::2], self.stride * 2

    def chosen(self) -> list[T]:
        if len(self.kept) <= self.count:
            return list(self.kept)
        if self.count == 1:
            return [self.kept[0]]
        last = len(self.kept) - 1
        return [self.kept[round(i * last / (self.count - 1))] for i in range(self.count)]


def load_video_frames(
    data: bytes, max_frames: int, max_decoded: int = DEFAULT_LIMITS.max_video_frames
) -> list[Image.Image]:
    """Up to ``max_frames`` frames spread evenly over the video, sampled while decoding (see :class:`FrameSampler`):
    only the sampled frames become images. A video of more than ``max_decoded`` frames answers 422, from its header
    when it says, else once decoding passes the limit.
    """
    import av

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InputError("the media is not a video that can be decoded")
            stream = container.streams.video[0]
            total = int(stream.frames or 0)
            _check_video_frames(total, max_decoded)
            sampler: FrameSampler[Image.Image] = FrameSampler(max_frames, total or None)
            for index, frame in enumerate(container.decode(stream)):
                _check_video_frames(index + 1, max_decoded, "the number of video frames decoded")
                if sampler.done(index):
                    break
                if sampler.wants(index):
                    sampler.keep(frame.to_image())
    except av.FFmpegError as exc:
        raise InputError("the media is not a video that can be decoded") from exc
    frames = sampler.chosen()
    if not frames:
        raise InputError("the video has no frames")
    return frames


def probe_video(data: bytes, max_decoded: int = DEFAULT_LIMITS.max_video_frames) -> None:
    """Check that the media is a video within ``max_decoded`` frames, decoding only its first frame."""
    import av

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InputError("the media is not a video that can be decoded")
            stream = container.streams.video[0]
            _check_video_frames(int(stream.frames or 0), max_decoded)
            if next(iter(container.decode(stream)), None) is None:
                raise InputError("the video has no frames")
    except av.FFmpegError as exc:
        raise InputError("the media is not a video that can be decoded") from exc


def _check_video_frames(count: int, max_decoded: int, what: str = "the number of video frames") -> None:
    if count > max_decoded:
        raise over_limit(what, count, "max_video_frames", max_decoded)


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
