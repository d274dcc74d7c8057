"""Vision tasks over real HTTP, each on a tiny model built offline (:mod:`tiny_builders`), answering the public
output shapes: segmentation, depth, mask generation, captioning, visual and document question answering, zero-shot
classification and detection, video classification.

document-question-answering runs on LayoutLM with the words and boxes given in ``params.word_boxes``: without them the
pipeline reads the document with Tesseract OCR (pytesseract), which the runtime does not ship.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from media_samples import b64, mp4, png
from runtime_support import ServerHandle

RED, BLUE = (200, 30, 30), (30, 30, 200)
IMAGE = b64(png((40, 30), (RED, BLUE)))


def run(server: ServerHandle, body: object) -> httpx.Response:
    with server.client() as client:
        return client.post("/run", json=body)


def output_of(server: ServerHandle, body: object) -> Any:
    response = run(server, body)
    assert response.status_code == 200, response.text
    assert response.json()["error"] is None
    return response.json()["output"]


def decoded_png(data: str) -> Any:
    import base64

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "PNG"
    return image


@pytest.fixture(scope="module")
def llava_vqa(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> ServerHandle:
    return serve(tiny_model("llava"), "visual-question-answering")


def test_image_segmentation_masks_partition_the_image(
    serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]
) -> None:
    import numpy as np

    server = serve(tiny_model("segformer"), "image-segmentation")
    segments = output_of(server, {"base64": IMAGE})
    assert segments
    labels = [segment["label"] for segment in segments]
    assert len(set(labels)) == len(labels)
    assert set(labels) <= {"background", "cat", "dog"}
    coverage = np.zeros((30, 40), dtype=int)
    for segment in segments:
        assert set(segment) == {"label", "score", "mask_png"}
        assert segment["score"] is None  # semantic segmentation scores no segment
        mask = decoded_png(segment["mask_png"])
        assert (mask.size, mask.mode) == ((40, 30), "L")
        pixels = np.asarray(mask)
        assert set(np.unique(pixels)) <= {0, 255}
        coverage += pixels == 255
    assert (coverage == 1).all(), "each pixel belongs to exactly one segment"


def test_depth_estimation_answers_a_depth_map_of_the_input_size(
    serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]
) -> None:
    server = serve(tiny_model("glpn"), "depth-estimation")
    output = output_of(server, {"base64": b64(png((64, 48), (RED, BLUE)))})
    assert set(output) == {"depth_png", "formatted_predicted_depth_array"}
    assert decoded_png(output["depth_png"]).size == (64, 48)
    depth = output["formatted_predicted_depth_array"]
    assert len(depth) == 48
    assert all(len(row) == 64 and all(isinstance(value, float) for value in row) for row in depth)


def test_mask_generation_masks_and_scores(
    serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]
) -> None:
    server = serve(tiny_model("sam"), "mask-generation")
    params = {"points_per_crop": 4, "points_per_batch": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    output = output_of(server, {"base64": IMAGE, "params": params})
    assert set(output) == {"input_image_dimensions", "masks", "scores"}
    assert output["input_image_dimensions"] == [40, 30]
    assert output["masks"]
    assert len(output["scores"]) == len(output["masks"])
    assert all(isinstance(score, float) for score in output["scores"])
    for mask in output["masks"]:
        assert decoded_png(mask).size == (40, 30)


def test_image_to_text_captions(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> None:
    server = serve(tiny_model("blip"), "image-to-text")
    caption = output_of(server, {"base64": IMAGE, "params": {"max_new_tokens": 6, "min_new_tokens": 2}})
    assert isinstance(caption, str)
    assert caption.strip()
    assert output_of(server, {"base64": IMAGE, "params": {"max_new_tokens": 6, "min_new_tokens": 2}}) == caption
    too_long = run(server, {"base64": IMAGE, "params": {"max_new_tokens": 10**6}})
    assert too_long.status_code == 422


def test_visual_question_answering(llava_vqa: ServerHandle) -> None:
    output = output_of(
        llava_vqa, {"base64": IMAGE, "question": "what is this", "params": {"max_new_tokens": 5, "min_new_tokens": 2}}
    )
    assert isinstance(output, list)
    [answer] = output
    assert set(answer) == {"answer"}
    assert isinstance(answer["answer"], str) and answer["answer"].strip()
    no_question = run(llava_vqa, {"base64": IMAGE})
    assert no_question.status_code == 422
    assert "question" in no_question.json()["error"]


def test_document_question_answering_spans_words(
    serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]
) -> None:
    server = serve(tiny_model("layoutlm"), "document-question-answering")
    words = ["John", "Doe", "is", "a", "software", "engineer", "at", "Google", "in", "Paris"]
    word_boxes = [[word, [index * 90, 100, index * 90 + 80, 140]] for index, word in enumerate(words)]
    body = {
        "base64": b64(png((200, 100), ((255, 255, 255),))),
        "question": "where does John work",
        "params": {"word_boxes": word_boxes, "top_k": 2},
    }
    answers = output_of(server, body)
    assert len(answers) == 2
    assert answers[0]["score"] >= answers[1]["score"]
    for answer in answers:
        assert set(answer) == {"score", "answer", "start", "end"}
        assert 0.0 < answer["score"] <= 1.0
        assert 0 <= answer["start"] <= answer["end"] < len(words)
        assert answer["answer"] == " ".join(words[answer["start"] : answer["end"] + 1])


def test_zero_shot_image_classification(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> None:
    server = serve(tiny_model("clip"), "zero-shot-image-classification")
    labels = ["cat", "dog", "bird"]
    output = output_of(server, {"base64": IMAGE, "candidate_labels": labels})
    assert [set(item) for item in output] == [{"score", "label"}] * 3
    assert sorted(item["label"] for item in output) == sorted(labels)
    scores = [item["score"] for item in output]
    assert scores == sorted(scores, reverse=True)
    assert math.isclose(sum(scores), 1.0, rel_tol=1e-4)
    assert run(server, {"base64": IMAGE}).status_code == 422


def test_zero_shot_object_detection(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> None:
    server = serve(tiny_model("owlvit"), "zero-shot-object-detection")
    body = {"base64": IMAGE, "candidate_labels": ["cat", "dog"], "params": {"threshold": 0.0}}
    detections = output_of(server, body)
    assert len(detections) == 16 * 2  # every box of the 4x4 patch grid, for each label
    for detection in detections:
        assert set(detection) == {"score", "label", "box"}
        assert detection["label"] in {"cat", "dog"}
        assert 0.0 < detection["score"] < 1.0
        assert set(detection["box"]) == {"xmin", "ymin", "xmax", "ymax"}
        assert all(isinstance(value, int) for value in detection["box"].values())
    best = output_of(server, {**body, "params": {"threshold": 0.0, "top_k": 3}})
    assert best == sorted(detections, key=lambda detection: detection["score"], reverse=True)[:3]


def test_video_classification(serve: Callable[..., ServerHandle], tiny_model: Callable[[str], Path]) -> None:
    server = serve(tiny_model("videomae"), "video-classification")
    video = b64(mp4(frames=10))
    output = output_of(server, {"base64": video})
    assert [set(item) for item in output] == [{"score", "label"}] * 3
    assert sorted(item["label"] for item in output) == ["dancing", "running", "walking"]
    assert math.isclose(sum(item["score"] for item in output), 1.0, rel_tol=1e-4)
    [top] = output_of(server, {"base64": video, "params": {"top_k": 1}})
    assert top == output[0]
    not_video = run(server, {"base64": b64(b"plain text, not a video")})
    assert not_video.status_code == 422
    assert "not a video" in not_video.json()["error"]
