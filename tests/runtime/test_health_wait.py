"""``/health?wait=``: a loading runtime holds the health check and answers 200 the moment its model is loaded.

A real uvicorn server whose loader blocks until the test lets it finish; real HTTP calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from runtime_support import ServerHandle
from test_batching import StubHandler

from modelcluster.api.errors import InputError
from modelcluster.api.health import MAX_HEALTH_WAIT_S, health_url, health_wait
from modelcluster.runtime.loading import LoadProgress
from modelcluster.runtime.settings import RuntimeSettings
from modelcluster.runtime.tasks.base import Handler


class Gate:
    """A loader that returns a stub handler once :attr:`open` is set (or raises when :attr:`fail` is)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.fail = False
        self.entered = threading.Event()

    def __call__(self, settings: RuntimeSettings, progress: LoadProgress) -> Handler:
        self.entered.set()
        self.open.wait(30)
        if self.fail:
            raise RuntimeError("the weights are broken")
        return StubHandler()


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("0.5", 0.5), ("2", 2.0), ("5", MAX_HEALTH_WAIT_S)]
)
def test_a_wait_is_read_in_seconds(value: str | None, seconds: float) -> None:
    assert health_wait(value) == seconds


@pytest.mark.parametrize("value", ["-1", "5.01", "nan", "inf", "soon", "1e400"])
def test_a_wait_out_of_bounds_or_not_a_number_is_refused(value: str) -> None:
    with pytest.raises(InputError, match="'wait' must be"):
        health_wait(value)


def test_the_health_url_asks_for_a_wait_only_when_one_is_given() -> None:
    assert health_url("http://10.0.0.1:8000") == "http://10.0.0.1:8000/health"
    assert health_url("http://10.0.0.1:8000", 1.0) == "http://10.0.0.1:8000/health?wait=1"
    assert health_url("http://h:1", 60) == f"http://h:1/health?wait={MAX_HEALTH_WAIT_S:g}"


def test_a_held_health_check_answers_the_moment_the_model_is_loaded(serve: Callable[..., ServerHandle]) -> None:
    gate = Gate()
    server = serve("stub", "feature-extraction", wait_ready=False, loader=gate)
    assert gate.entered.wait(10)
    with httpx.Client(base_url=server.base_url, timeout=10) as client, ThreadPoolExecutor(2) as pool:
        began = time.monotonic()
        plain = client.get("/health")
        assert plain.status_code == 503  # no wait asked: at once, loading
        assert time.monotonic() - began < 1.0
        held = pool.submit(lambda: (client.get("/health", params={"wait": "5"}), time.monotonic()))
        time.sleep(0.3)
        assert not held.done()  # still loading: held
        opened = time.monotonic()
        gate.open.set()
        answer, answered_at = held.result(timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"error": None, "output": "ready"}
        assert answered_at - opened < 0.5  # the load's end, not the end of the 5 s hold
        began = time.monotonic()
        assert client.get("/health", params={"wait": "5"}).status_code == 200  # ready: no hold
        assert time.monotonic() - began < 1.0


def test_a_hold_ends_with_the_wait_or_with_a_failed_load(serve: Callable[..., ServerHandle]) -> None:
    gate = Gate()
    server = serve("stub", "feature-extraction", wait_ready=False, loader=gate)
    assert gate.entered.wait(10)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        began = time.monotonic()
        answer = client.get("/health", params={"wait": "0.4"})
        assert answer.status_code == 503
        assert "loading" in answer.json()["error"]
        assert 0.35 <= time.monotonic() - began < 2.0
        refused = client.get("/health", params={"wait": "600"})
        assert refused.status_code == 422
        assert refused.json() == {"error": "'wait' must be between 0 and 5 seconds", "output": None}
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(client.get, "/health", params={"wait": "5"})
            time.sleep(0.2)
            gate.fail = True
            failed_at = time.monotonic()
            gate.open.set()
            answer = held.result(timeout=10)
        assert answer.status_code == 503
        assert "failed to load" in answer.json()["error"]
        assert time.monotonic() - failed_at < 2.0
