"""Vision tasks on transformers pipelines and Auto classes; images in by url/base64, images out as base64 PNG."""

from __future__ import annotations

import tempfile
from importlib import import_module
from pathlib import Path
from typing import Any

from modelcluster.api.inputs import Payload
from modelcluster.runtime import media
from modelcluster.runtime.generation_params import accepted_names, check_generation_params
from modelcluster.runtime.limits import check_video_sampling
from modelcluster.runtime.tasks.base import Handler, LoadContext, StopCheck, never_stop
from modelcluster.runtime.tasks.common import build_pipeline, jsonable, per_input, stopping_criteria


def png_base64(image: Any) -> str:
    from PIL import Image

    if not isinstance(image, Image.Image):
        import numpy as np

        array = np.asarray(image)
        if array.dtype == bool:
            array = array.astype("uint8") * 255
        image = Image.fromarray(array)
    return media.to_base64(media.encode_png(image))


class ImagePipelineHandler(Handler):
    """Image in; the pipeline's output per image, reshaped by ``shape``. Batches when the pipeline does."""

    def __init__(self, task: str, pipe: Any, params: frozenset[str]) -> None:
        self.task = task
        self.pipe = pipe
        self.params = params

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        image = media.load_image(media_blobs[0], self.limits.max_image_pixels)
        return (image, payload)

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        if self.batchable:
            images = [image for image, _ in items]
            results = per_input(self.pipe(images, batch_size=len(images), **params), len(images))
            return [self.shape(result) for result in results]
        return [self.shape(self.call(image, payload, params)) for image, payload in items]

    def call(self, image: Any, payload: Payload, params: dict[str, Any]) -> Any:
        return self.pipe(image, **params)

    def shape(self, result: Any) -> Any:
        return jsonable(result)


class LabelledImageHandler(ImagePipelineHandler):
    """zero-shot image classification / object detection: the image plus ``candidate_labels``."""

    def call(self, image: Any, payload: Payload, params: dict[str, Any]) -> Any:
        return self.pipe(image, candidate_labels=list(payload.candidate_labels or []), **params)


class SegmentationHandler(ImagePipelineHandler):
    def shape(self, result: Any) -> Any:
        return [
            {
                "label": segment.get("label"),
                "score": jsonable(segment.get("score")),
                "mask_png": png_base64(segment["mask"]),
            }
            for segment in result
        ]


class DepthHandler(ImagePipelineHandler):
    def shape(self, result: Any) -> Any:
        return {
            "depth_png": png_base64(result["depth"]),
            "formatted_predicted_depth_array": jsonable(result["predicted_depth"]),
        }


class MaskGenerationHandler(ImagePipelineHandler):
    def call(self, image: Any, payload: Payload, params: dict[str, Any]) -> Any:
        result = dict(self.pipe(image, **params))
        result["input_image_dimensions"] = [image.width, image.height]
        return result

    def shape(self, result: Any) -> Any:
        return {
            "input_image_dimensions": result["input_image_dimensions"],
            "masks": [png_base64(mask) for mask in result["masks"]],
            "scores": jsonable(result["scores"]),
        }


class FeatureHandler(ImagePipelineHandler):
    def call(self, image: Any, payload: Payload, params: dict[str, Any]) -> Any:
        params = {"pool": True, **params}
        return self.pipe(image, **params)


class DocumentQuestionHandler(ImagePipelineHandler):
    def call(self, image: Any, payload: Payload, params: dict[str, Any]) -> Any:
        result = self.pipe(image=image, question=payload.question, **params)
        return result if isinstance(result, list) else [result]


class ImageTextGenerationHandler(Handler):
    """image-to-text (captioning) and visual-question-answering on an image-text-to-text model's ``generate``."""

    def __init__(self, task: str, model: Any, processor: Any, device: str) -> None:
        self.task = task
        self.model = model
        self.processor = processor
        self.device = device
        self.params = accepted_names()

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return check_generation_params(params, self.limits, what=f"param(s) for {self.task}")

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        return (media.load_image(media_blobs[0], self.limits.max_image_pixels), payload.question)

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        return self.run_until(items, params, never_stop)

    def run_until(self, items: list[Any], params: dict[str, Any], should_stop: StopCheck) -> list[Any]:
        import torch

        outputs = []
        for image, question in items:
            prompt = self._prompt(question)
            encoded = self.processor(images=image, text=prompt, return_tensors="pt").to(self.device)
            kwargs = {"max_new_tokens": min(64, self.limits.max_new_tokens), **params}
            with torch.inference_mode():
                generated = self.model.generate(**encoded, stopping_criteria=stopping_criteria(should_stop), **kwargs)
            if "input_ids" in encoded and not self.model.config.is_encoder_decoder:
                generated = generated[:, encoded["input_ids"].shape[1] :]
            text = self.processor.batch_decode(generated, skip_special_tokens=True)[0].strip()
            outputs.append([{"answer": text}] if self.task == "visual-question-answering" else text)
        return outputs

    def _prompt(self, question: str | None) -> str | None:
        template = getattr(self.processor, "chat_template", None)
        if template is None:
            return question
        content: list[dict[str, Any]] = [{"type": "image"}]
        content.append({"type": "text", "text": question or "Describe this image."})
        prompt: str = self.processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True
        )
        return prompt


class VideoClassificationHandler(Handler):
    task = "video-classification"
    params = frozenset({"top_k", "num_frames", "frame_sampling_rate", "function_to_apply"})

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        checked = super().check_params(params)
        check_video_sampling(checked, int(getattr(self.pipe.model.config, "num_frames", 16)), self.limits)
        return checked

    def prepare(self, payload: Payload, media_blobs: list[bytes]) -> Any:
        # rejects non-video, long video and huge frames early
        media.probe_video(media_blobs[0], self.limits.max_video_frames, self.limits.max_image_pixels)
        return media_blobs[0]

    def run_batch(self, items: list[Any], params: dict[str, Any]) -> list[Any]:
        outputs = []
        for data in items:
            if getattr(self.pipe, "video_processor", None) is None:  # the pipeline decodes a file with PyAV
                with tempfile.TemporaryDirectory() as folder:
                    path = Path(folder) / "input.mp4"
                    path.write_bytes(data)
                    outputs.append(jsonable(self.pipe(str(path), **params)))
            else:
                outputs.append(jsonable(self.pipe(self.frames(data, params), **params)))
        return outputs

    def frames(self, data: bytes, params: dict[str, Any]) -> Any:
        """The video decoded here with PyAV: a video processor given a file would need torchcodec, which the runtime
        does not have. Like the processor, ``num_frames`` frames spread evenly over the whole video."""
        import numpy as np

        count = int(params.get("num_frames", getattr(self.pipe.model.config, "num_frames", 16)))
        frames = media.load_video_frames(data, count, self.limits.max_video_frames, self.limits.max_image_pixels)
        return np.stack([np.asarray(frame) for frame in frames])


def load_image_classification(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "image-classification")
    params = frozenset({"top_k", "function_to_apply"})
    return ImagePipelineHandler(ctx.task, pipe, params)


def load_object_detection(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "object-detection")
    return ImagePipelineHandler(ctx.task, pipe, frozenset({"threshold"}))


def load_image_segmentation(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "image-segmentation")
    params = frozenset({"subtask", "threshold", "mask_threshold", "overlap_mask_area_threshold"})
    return SegmentationHandler(ctx.task, pipe, params)


def load_depth_estimation(ctx: LoadContext) -> Handler:
    return DepthHandler(ctx.task, build_pipeline(ctx, "depth-estimation"), frozenset())


def load_mask_generation(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "mask-generation")
    params = frozenset(
        {"points_per_batch", "points_per_crop", "pred_iou_thresh", "stability_score_thresh", "crops_n_layers"}
    )
    return MaskGenerationHandler(ctx.task, pipe, params)


def load_image_feature_extraction(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "image-feature-extraction")
    return FeatureHandler(ctx.task, pipe, frozenset({"pool"}))


def load_zero_shot_image_classification(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "zero-shot-image-classification")
    params = frozenset({"hypothesis_template"})
    return LabelledImageHandler(ctx.task, pipe, params)


def load_zero_shot_object_detection(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "zero-shot-object-detection")
    return LabelledImageHandler(ctx.task, pipe, frozenset({"threshold", "top_k"}))


def load_document_question_answering(ctx: LoadContext) -> Handler:
    pipe = build_pipeline(ctx, "document-question-answering")
    params = frozenset({"top_k", "max_answer_len", "max_seq_len", "lang", "word_boxes"})
    return DocumentQuestionHandler(ctx.task, pipe, params)


def _load_image_text_model(ctx: LoadContext) -> Handler:
    transformers: Any = import_module("transformers")
    processor = transformers.AutoProcessor.from_pretrained(str(ctx.model_dir), trust_remote_code=ctx.trust_remote_code)
    model = transformers.AutoModelForImageTextToText.from_pretrained(
        str(ctx.model_dir), dtype=ctx.torch_dtype(), trust_remote_code=ctx.trust_remote_code, **ctx.loading_kwargs
    )
    model.to(ctx.device).eval()
    return ImageTextGenerationHandler(ctx.task, model, processor, ctx.device)


def load_image_to_text(ctx: LoadContext) -> Handler:
    return _load_image_text_model(ctx)


def load_visual_question_answering(ctx: LoadContext) -> Handler:
    return _load_image_text_model(ctx)


def load_video_classification(ctx: LoadContext) -> Handler:
    return VideoClassificationHandler(build_pipeline(ctx, "video-classification"))
