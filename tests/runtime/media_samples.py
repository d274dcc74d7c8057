"""Small media made on the fly for requests: PNG images, WAV audio and MP4 video, as bytes or base64."""

from __future__ import annotations

import base64
import io


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(size: tuple[int, int] = (40, 30), colors: tuple[tuple[int, int, int], ...] = ((200, 30, 30),)) -> bytes:
    """An image of vertical stripes, one per color."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    stripe = size[0] / len(colors)
    for index, color in enumerate(colors):
        draw.rectangle((round(index * stripe), 0, round((index + 1) * stripe), size[1]), fill=color)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def wav(rate: int = 8000, seconds: float = 0.5) -> bytes:
    """A 440 Hz tone."""
    import numpy as np
    import soundfile

    t = np.arange(int(rate * seconds)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def mp4(frames: int = 10, size: tuple[int, int] = (48, 32)) -> bytes:
    """A video whose frames grow brighter."""
    from PIL import Image

    from modelcluster.runtime import media

    step = 250 // max(1, frames - 1)
    return media.encode_mp4([Image.new("RGB", size, (index * step, 100, 50)) for index in range(frames)])
