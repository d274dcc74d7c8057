"""Image and video generation on diffusers pipelines; media out as base64 PNG / MP4."""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

from modelcluster.api.errors import InputError
from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.limits import check_diffusion_params
from modelcluster.runtime.tasks.base import Handler, LoadContext, MediaOutput, StopCheck, Stopped, never_stop

COMMON_PARAMS = frozenset({"num_inference_steps", "guidance_scale", "negative_prompt", "height", "width", "seed"})


def stop_callback(should_stop: StopCheck) -> Any:
    """A diffusers ``callback_on_step_end`` that ends the denoising loop once ``should_stop()``."""

    def callback(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        if should_stop():
            raise Stopped(f"stopped after {step + 1} steps")
        return callback_kwargs

    return callback


def pipeline_kwargs(params: dict[str, Any], device: str) -> dict[str, Any]:
    """``seed`` becomes a torch generator on the pipeline's device; the rest pass through."""
    kwargs = {key: value for key, value in params.items() if key != "seed"}
    if "seed" in params:
        import torch

        if not isinstance(params["seed"], int):
            raise InputError("seed must be an integer")
        kwargs["generator"] = torch.Generator(device=device).manual_seed(params["seed"])
    return kwargs


class DiffusionHandler(Handler):
    def __init__(self, task: str, pipe: Any, device: str, params: frozenset[str]) -> None:
        self.task = task
        self.pipe = pipe
        self.device = device
        self.params = params

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """Known params, with image size, steps and frames under their limits."""
        checked = super().check_params(params)
        check_diffusion_params(checked, self.limits)
        return checked

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        if self.spec.required and (not isinstance(payload.text, str) or not payload.text.strip()):
            raise InputError(f"{self.task} takes one non-empty string in `text`")
        return payload.text

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return self.run_until(items, params, never_stop)

    def run_until(self, items: list[Any], params: dict[str, Any], should_stop: StopCheck) -> list[Any]:
        """Pipelines that take ``callback_on_step_end`` stop between denoising steps once every request gave up."""
        stoppable = "callback_on_step_end" in inspect.signature(self.pipe.__call__).parameters
        outputs = []
        for prompt in items:
            kwargs = pipeline_kwargs(params, self.device)
            if stoppable:
                kwargs["callback_on_step_end"] = stop_callback(should_stop)
            if prompt is not None:
                kwargs["prompt"] = prompt
            outputs.append(self.render(self.pipe(**kwargs)))
        return outputs

    def render(self, result: Any) -> MediaOutput:
        return MediaOutput(media.encode_png(result.images[0]), "image/png")


class VideoDiffusionHandler(DiffusionHandler):
    def render(self, result: Any) -> MediaOutput:
        import numpy as np
        from PIL import Image

        frames = result.frames[0]
        images = [
            frame
            if isinstance(frame, Image.Image)
            else Image.fromarray((np.asarray(frame) * 255).clip(0, 255).astype("uint8"))
            for frame in frames
        ]
        return MediaOutput(media.encode_mp4(images), "video/mp4")


def _load(ctx: LoadContext) -> Any:
    diffusers: Any = import_module("diffusers")
    pipe = diffusers.DiffusionPipeline.from_pretrained(
        str(ctx.model_dir), torch_dtype=ctx.torch_dtype(), **ctx.loading_kwargs
    )
    pipe.to(ctx.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_text_to_image(ctx: LoadContext) -> Handler:
    return DiffusionHandler(ctx.task, _load(ctx), ctx.device, COMMON_PARAMS)


def load_unconditional(ctx: LoadContext) -> Handler:
    params = frozenset({"num_inference_steps", "seed", "batch_size"}) - {"batch_size"}
    return DiffusionHandler(ctx.task, _load(ctx), ctx.device, params)


def load_text_to_video(ctx: LoadContext) -> Handler:
    params = COMMON_PARAMS | {"num_frames"}
    return VideoDiffusionHandler(ctx.task, _load(ctx), ctx.device, params)
