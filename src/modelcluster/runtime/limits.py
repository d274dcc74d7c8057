"""Per-request limits that keep one request from starving the others, and the pure checks that enforce them.

Every limit is a runtime setting (the environment variable named in :data:`SETTING_NAMES`); a request over a
limit answers 422 with a message that names the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload


@dataclass(frozen=True)
class Limits:
    """The limits a handler and the request path check; the defaults are the settings' defaults."""

    max_media_blocks: int = 8
    max_items: int = 256
    max_video_frames: int = 3600
    max_audio_seconds: float = 600.0
    #: Decoded audio samples (frames x channels): 600 s of 48 kHz stereo, 4 bytes each once decoded.
    max_audio_samples: int = 600 * 48_000 * 2
    #: Pixels (width x height) of an input image, checked from its header before it is decoded.
    max_image_pixels: int = 40_000_000
    max_new_tokens: int = 4096
    max_num_beams: int = 4
    max_image_side: int = 2048
    max_diffusion_steps: int = 100
    max_diffusion_frames: int = 128


DEFAULT_LIMITS = Limits()

#: Limit field -> the environment variable that sets it (named in the 422 messages).
SETTING_NAMES = {name: name.upper() for name in Limits.__dataclass_fields__}


def over_limit(what: str, value: float, limit: str, bound: float) -> InputError:
    """The 422 of a request over one limit: what is too large, by how much, and which setting bounds it."""
    return InputError(f"{what} is {_number(value)}; the limit is {_number(bound)} ({SETTING_NAMES[limit]})")


def _number(value: float) -> str:
    """Whole numbers in full (``57600000``, not ``5.76e+07``), others as ``:g`` writes them."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check_request_size(payload: Payload, media_blocks: int, limits: Limits) -> None:
    """Items per request (``text`` list, ``candidate_labels``) and media blocks per request."""
    if isinstance(payload.text, list) and len(payload.text) > limits.max_items:
        raise over_limit("the number of `text` items", len(payload.text), "max_items", limits.max_items)
    if payload.candidate_labels is not None and len(payload.candidate_labels) > limits.max_items:
        raise over_limit(
            "the number of `candidate_labels`", len(payload.candidate_labels), "max_items", limits.max_items
        )
    if media_blocks > limits.max_media_blocks:
        raise over_limit("the number of media blocks", media_blocks, "max_media_blocks", limits.max_media_blocks)


def check_integer(name: str, value: Any, low: int, high: int | None = None, setting: str | None = None) -> int:
    """An integer param within ``[low, high]``; the message names the param, the bound and its setting."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer")
    if value < low or (high is not None and value > high):
        upper = f" to {high}" if high is not None else " or more"
        where = f" ({setting})" if setting else ""
        raise InputError(f"{name} must be an integer from {low}{upper}{where}; got {value}")
    return value


def check_number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    """A finite number within ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{name} must be a number")
    if value < low or value > high or (low_open and value == low):
        opening = "(" if low_open else "["
        raise InputError(f"{name} must be in {opening}{low:g}, {high:g}]; got {value:g}")
    return float(value)


def check_diffusion_params(params: dict[str, Any], limits: Limits) -> None:
    """Image size, denoising steps and video frames of a diffusion request, and the types of the other params."""
    for side in ("height", "width"):
        if side in params:
            check_integer(side, params[side], 8, limits.max_image_side, SETTING_NAMES["max_image_side"])
    if "num_inference_steps" in params:
        check_integer(
            "num_inference_steps",
            params["num_inference_steps"],
            1,
            limits.max_diffusion_steps,
            SETTING_NAMES["max_diffusion_steps"],
        )
    if "num_frames" in params:
        check_integer(
            "num_frames", params["num_frames"], 1, limits.max_diffusion_frames, SETTING_NAMES["max_diffusion_frames"]
        )
    if "guidance_scale" in params:
        check_number("guidance_scale", params["guidance_scale"], 0.0, 100.0)
    if "negative_prompt" in params and not isinstance(params["negative_prompt"], str):
        raise InputError("negative_prompt must be a string")
    if "seed" in params:
        check_integer("seed", params["seed"], 0, 2**63 - 1)


def check_video_sampling(params: dict[str, Any], default_frames: int, limits: Limits) -> None:
    """video-classification: the frames a request asks to decode (``num_frames`` x ``frame_sampling_rate``)."""
    setting = SETTING_NAMES["max_video_frames"]
    frames = check_integer("num_frames", params.get("num_frames", default_frames), 1, limits.max_video_frames, setting)
    rate = check_integer("frame_sampling_rate", params.get("frame_sampling_rate", 1), 1, limits.max_video_frames)
    if frames * rate > limits.max_video_frames:
        raise over_limit("num_frames x frame_sampling_rate", frames * rate, "max_video_frames", limits.max_video_frames)
