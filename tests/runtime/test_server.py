"""Health, status, metrics and every bad-input case, over a real server; the process keeps serving."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_support import ServerHandle, free_port

from support import eventually


@pytest.fixture(scope="module")
def classifier(serve: Callable[..., ServerHandle], text_models: dict[str, Path]) -> ServerHandle:
    return serve(text_models["text-classification"], "text-classification", max_body_bytes=4096)


@pytest.fixture(scope="module")
def media_server() -> Iterator[str]:
    """A local HTTP server for URL inputs: /cat.png is an image, /page.html is not media."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    files = {"/cat.png": (buffer.getvalue(), "image/png"), "/page.html": (b"<html>hello</html>", "text/html")}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = files.get(self.path)
            if found is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", found[1])
            self.send_header("Content-Length", str(len(found[0])))
            self.end_headers()
            self.wfile.write(found[0])

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_health_status_metrics(classifier: ServerHandle) -> None:
    with classifier.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"error": None, "output": "ready"}
        status = client.get("/status").json()["output"]
        assert status["status"] == "ready"
        assert status["load_percent"] == 100
        assert status["download_percent"] == 100
        assert status["memory"]["rss_bytes"] > 0
        assert status["device"] == "cpu"
        client.post("/run", json={"text": "hello"})
        metrics = client.get("/metrics").text
    for name in (
        "modelcluster_runtime_queue_depth",
        "modelcluster_runtime_in_flight_requests",
        "modelcluster_runtime_batch_size_bucket",
        'modelcluster_runtime_stage_seconds_bucket{le="0.005",stage="queue_wait"}',
        'stage="inference"',
        'stage="total"',
        "modelcluster_runtime_model_load_seconds",
        "modelcluster_runtime_last_request_timestamp_seconds",
        'modelcluster_runtime_requests_total{status="200"}',
    ):
        assert name in metrics, name
    assert classifier.metric("modelcluster_runtime_model_load_seconds") > 0
    assert classifier.metric("modelcluster_runtime_last_request_timestamp_seconds") > 1e9


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "needs `text`"),
        ({"text": 5}, 422, "text"),
        ({"text": "hi", "params": {"temperature": 1}}, 422, "unknown param(s) for text-classification: temperature"),
        ({"messages": [{"role": "user", "content": "hi"}]}, 422, "does not take `messages`"),
        ({"text": "hi", "url": "http://127.0.0.1:1/x.png"}, 422, "does not take `url`"),
        ({"text": "hi", "colour": "red"}, 422, "colour"),
        ({"text": "hi", "stream": True}, 422, "does not stream"),
        ({"input": {"text": "hi", "question": "q"}}, 422, "does not take `question`"),
        ({"text": "x" * 5000}, 413, "larger than 4096 bytes"),
    ],
)
def test_bad_input(classifier: ServerHandle, body: dict[str, object], status: int, message: str) -> None:
    with classifier.client() as client:
        response = client.post("/run", json=body)
        assert response.status_code == status, response.text
        assert response.json()["output"] is None
        assert message in response.json()["error"]
        assert client.post("/run", json={"text": "still serving"}).status_code == 200


def test_invalid_json_and_wrong_body_type(classifier: ServerHandle) -> None:
    with classifier.client() as client:
        broken = client.post("/run", content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 422
        assert "not valid JSON" in broken.json()["error"]
        listed = client.post("/run", json=["a", "b"])
        assert listed.status_code == 422
        assert listed.json() == {"error": "the body must be a JSON object", "output": None}
        missing = client.get("/nowhere")
        assert missing.status_code == 404
        assert missing.json()["output"] is None


def test_failed_load_is_reported_not_crash_looping(serve: Callable[..., ServerHandle], tmp_path: Path) -> None:
    server = serve(tmp_path, "text-classification", wait_ready=False)
    with server.client() as client:
        eventually(
            lambda: client.get("/status").json()["output"]["status"] == "failed", interval=0.02, what="load failure"
        )
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["error"].startswith("Fatal, model failed to load:")
        run = client.post("/run", json={"text": "hi"})
        assert run.status_code == 503
        assert server.metric("modelcluster_runtime_errors_total", 'kind="load"') == 1


@pytest.fixture(scope="module")
def vit(serve: Callable[..., ServerHandle], vision_models: dict[str, Path]) -> ServerHandle:
    return serve(
        vision_models["image-classification"],
        "image-classification",
        max_media_bytes=200_000,
        url_allowlist=["127.0.0.1/32"],  # the media server of these tests is on loopback
    )


def png_b64(size: tuple[int, int] = (32, 32)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_image_classification_by_base64_and_url(vit: ServerHandle, media_server: str) -> None:
    with vit.client() as client:
        by_b64 = client.post("/run", json={"base64": png_b64(), "params": {"top_k": 2}})
        assert by_b64.status_code == 200, by_b64.text
        assert len(by_b64.json()["output"]) == 2
        assert {"label", "score"} == set(by_b64.json()["output"][0])
        data_uri = client.post("/run", json={"input": "data:image/png;base64," + png_b64()})
        assert data_uri.status_code == 200, data_uri.text
        by_url = client.post("/run", json={"url": f"{media_server}/cat.png"})
        assert by_url.status_code == 200, by_url.text
        by_sdk_url = client.post("/run", json={"input": f"{media_server}/cat.png"})
        assert by_sdk_url.json()["output"] == by_url.json()["output"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"base64": "%%%not base64%%%"}, 422, "could not be decoded"),
        ({"base64": base64.b64encode(b"plain text, not an image").decode()}, 422, "not an image"),
        ({"url": "MEDIA/page.html"}, 422, "not an image"),
        ({"url": "MEDIA/missing.png"}, 422, "could not fetch the URL: the server answered with an error status"),
        ({"url": "http://127.0.0.1:PORT/x.png"}, 422, "could not fetch the URL: the connection failed"),
        ({"url": "file:///etc/passwd"}, 422, "http or https"),
        ({"url": "MEDIA/cat.png", "base64": "aGk="}, 422, "only one of"),
        ({"text": "a picture"}, 422, "does not take `text`"),
        ({"base64": base64.b64encode(b"\0" * 300_000).decode()}, 413, "larger than 200000 bytes"),
    ],
)
def test_bad_media(vit: ServerHandle, media_server: str, body: dict[str, str], status: int, message: str) -> None:
    closed_port = str(free_port())
    body = {k: v.replace("MEDIA", media_server).replace("PORT", closed_port) for k, v in body.items()}
    with vit.client() as client:
        response = client.post("/run", json=body)
        assert response.status_code == status, response.text
        assert message in response.json()["error"]
        assert response.json()["output"] is None
        assert client.post("/run", json={"base64": png_b64()}).status_code == 200
