"""Media in (url or base64 -> bytes -> image, audio, video frames) and out (png, wav, mp4 bytes)."""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from collections.abc import AsyncIterator
from fractions import Fraction
from importlib import import_module
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from modelcluster.api.errors import InputError, PayloadTooLarge
from modelcluster.runtime.limits import DEFAULT_LIMITS, SETTING_NAMES, over_limit

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

T = TypeVar("T")

# The raster formats an input image may be in; PIL's other plugins (EPS runs Ghostscript, and so on) are never tried.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")


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


def check_image_pixels(size: tuple[int, int], max_pixels: int) -> None:
    """An image of ``size`` (width, height, as its header declares) over ``max_pixels`` answers 422."""
    width, height = size
    if width * height > max_pixels:
        raise image_over_limit(f"{width}x{height}", max_pixels)


def image_over_limit(size: str, max_pixels: int) -> InputError:
    setting = SETTING_NAMES["max_image_pixels"]
    return InputError(f"the image is {size} pixels; the limit is {max_pixels} pixels ({setting})")


def load_image(data: bytes, max_pixels: int = DEFAULT_LIMITS.max_image_pixels) -> Image.Image:
    """Decode an image to RGB. Its size is read from the header first: over ``max_pixels`` it answers 422 before a
    pixel is decoded. PIL's own decompression-bomb guard is set to the same bound, and its error or warning
    answers the same 422.
    """
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = max_pixels  # also guards images PIL opens elsewhere in the process
    try:
        Image.init()  # registers every plugin once, so each allowed format is known by name
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # lazy: the header only
        check_image_pixels(image.size, max_pixels)
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise image_over_limit(found.group(1) if found else f"over {max_pixels}", max_pixels) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError("the media is not an image that can be decoded") from exc
    return image.convert("RGB")


def load_audio(
    data: bytes,
    sampling_rate: int,
    max_seconds: float = DEFAULT_LIMITS.max_audio_seconds,
    max_samples: int = DEFAULT_LIMITS.max_audio_samples,
) -> npt.NDArray[np.float32]:
    """Decode audio to mono float32 at ``sampling_rate`` (soundfile first, then PyAV for mp3/aac/...).

    Audio longer than ``max_seconds``, or of more than ``max_samples`` decoded samples (frames x channels), answers
    422: from the header before anything is decoded when the header says, else while decoding, as soon as the
    samples decoded so far pass a bound.
    """
    import numpy as np

    soundfile: Any = import_module("soundfile")
    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            rate = int(sound.samplerate)
            frames = int(sound.frames)
            check_audio_size(frames, rate, int(sound.channels), max_seconds, max_samples)
            # at most the checked frames: the array is allocated for them before reading
            samples = sound.read(frames=frames, dtype="float32", always_2d=True)
        mono = samples.mean(axis=1)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        mono, rate = _decode_audio_av(data, max_seconds, max_samples)
    if mono.size == 0:
        raise InputError("the audio has no samples")
    return resample(mono.astype(np.float32), int(rate), sampling_rate)


def check_audio_size(frames: float, rate: int, channels: int, max_seconds: float, max_samples: int) -> None:
    """``frames`` per channel at ``rate``: over ``max_seconds`` or ``max_samples`` (frames x channels) answers 422."""
    _check_audio_seconds(frames / rate if rate else 0.0, max_seconds)
    _check_audio_samples(math.ceil(frames) * max(1, channels), max_samples)


def _check_audio_seconds(seconds: float, max_seconds: float, what: str = "the audio") -> None:
    if seconds > max_seconds:
        raise over_limit(f"{what} length in seconds", round(seconds, 1), "max_audio_seconds", max_seconds)


def _check_audio_samples(samples: int, max_samples: int, what: str = "the audio") -> None:
    if samples > max_samples:
        raise over_limit(f"{what} samples (frames x channels)", samples, "max_audio_samples", max_samples)


def _decode_audio_av(data: bytes, max_seconds: float, max_samples: int) -> tuple[npt.NDArray[np.float32], int]:
    import av
    import numpy as np

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise InputError("the media is not audio that can be decoded")
            stream = container.streams.audio[0]
            rate = int(stream.rate or 16000)
            channels = int(stream.channels or 1)
            declared = _declared_seconds(stream, container)
            if declared is not None:
                check_audio_size(declared * rate, rate, channels, max_seconds, max_samples)
            # planar float samples in [-1, 1] (channels x samples), whatever the stream's sample format: packed
            # formats would otherwise come out interleaved in one row
            planar: Any = av.AudioResampler(format="fltp", layout=stream.layout, rate=rate)
            parts: list[npt.NDArray[np.float32]] = []
            decoded = 0
            decoded_samples = 0
            for frame in container.decode(stream):
                # the header may lie or say nothing: the bound holds for what is actually decoded
                decoded += frame.samples
                decoded_samples += frame.samples * max(1, int(frame.layout.nb_channels))
                _check_audio_seconds(decoded / rate, max_seconds)
                _check_audio_samples(decoded_samples, max_samples, "the decoded audio")
                parts.extend(out.to_ndarray() for out in planar.resample(frame))
            parts.extend(out.to_ndarray() for out in planar.resample(None))
    except av.FFmpegError as exc:
        raise InputError("the media is not audio that can be decoded") from exc
    if not parts:
        raise InputError("the audio has no samples")
    # channels averaged to mono, as for the audio soundfile reads
    return np.concatenate(parts, axis=1).mean(axis=0).astype(np.float32), rate


def _declared_seconds(stream: Any, container: Any) -> float | None:
    """The length the stream's or else the container's header declares, when it declares one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000  # AV_TIME_BASE
    return None


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
    data: bytes,
    max_frames: int,
    max_decoded: int = DEFAULT_LIMITS.max_video_frames,
    max_pixels: int = DEFAULT_LIMITS.max_image_pixels,
) -> list[Image.Image]:
    """Up to ``max_frames`` frames spread evenly over the video, sampled while decoding (see :class:`FrameSampler`):
    only the sampled frames become images. A video of more than ``max_decoded`` frames answers 422, from its header
    when it says, else once decoding passes the limit; so does a frame of more than ``max_pixels``, from the stream's
    header before anything is decoded, and for every decoded frame (a stream may change size).
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
            _check_frame_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels)
            sampler: FrameSampler[Image.Image] = FrameSampler(max_frames, total or None)
            for index, frame in enumerate(container.decode(stream)):
                _check_video_frames(index + 1, max_decoded, "the number of video frames decoded")
                _check_frame_pixels(frame.width, frame.height, max_pixels)
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


def probe_video(
    data: bytes, max_decoded: int = DEFAULT_LIMITS.max_video_frames, max_pixels: int = DEFAULT_LIMITS.max_image_pixels
) -> None:
    """Check that the media is a video within ``max_decoded`` frames of at most ``max_pixels``, decoding only its
    first frame."""
    import av

    try:
        container: Any
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InputError("the media is not a video that can be decoded")
            stream = container.streams.video[0]
            _check_video_frames(int(stream.frames or 0), max_decoded)
            _check_frame_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels)
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise InputError("the video has no frames")
            _check_frame_pixels(first.width, first.height, max_pixels)
    except av.FFmpegError as exc:
        raise InputError("the media is not a video that can be decoded") from exc


def _check_frame_pixels(width: int | None, height: int | None, max_pixels: int) -> None:
    if width and height and width * height > max_pixels:
        raise image_over_limit(f"{width}x{height} (a video frame)", max_pixels)


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
