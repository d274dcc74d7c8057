"""End-to-end scenarios against an installed chart's gateway (kind: see e2e/kind/README.md).

Real clients against the gateway, real runtime pods on the CPU path: create clusters through the HTTP API,
embeddings with the Bytez SDK, chat with the OpenAI client (whole and streamed), idle teardown to zero and the
wake of a held request, deletion. Each scenario prints one line; the first failure ends the run with status 1.

    python e2e/kind/scenarios.py --url http://127.0.0.1:18080 --key mc_... --namespace e2e
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import openai
from bytez import Bytez  # type: ignore[import-untyped]

#: The models of e2e/kind/values-kind.yaml; any embedding model with 384 dimensions and any chat model will do.
EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
CHAT = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: Pulling weights from the hub and loading them on a laptop's CPU.
STARTUP_S = 600.0
#: The idle timeout while the scenarios use the clusters (longer than any start), and the short one the idle
#: teardown scenario sets; how long teardown may take after that.
WORKING_TIMEOUT_S = 3600
IDLE_S = 30
TEARDOWN_S = IDLE_S + 90.0


class ScenarioFailed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ScenarioFailed(message)


def wait_for(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise ScenarioFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(2.0)


class Scenarios:
    def __init__(self, url: str, key: str, embedder: str = EMBEDDER, chat: str = CHAT) -> None:
        self.url = url.rstrip("/")
        self.embedder = embedder
        self.chat = chat
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Key {key}"}, timeout=STARTUP_S)
        self.sdk = Bytez(key, dev=True)
        self.sdk._client.host = f"{self.url}/models/v2/"
        self.openai = openai.OpenAI(api_key=key, base_url=f"{self.url}/models/v2/openai/v1", timeout=STARTUP_S)

    def cluster(self, model_id: str) -> dict[str, Any]:
        answer = self.http.get(f"/models/v2/{model_id}")
        check(answer.status_code == 200, f"GET {model_id}: {answer.status_code} {answer.text}")
        output: dict[str, Any] = answer.json()["output"]
        check(output["status"] != "failed", f"{model_id} failed: {output}")
        return output

    def running(self, model_id: str) -> bool:
        cluster = self.cluster(model_id)
        return bool(cluster["status"] == "running" and cluster["readyReplicas"] >= 1)

    def authentication(self) -> None:
        check(httpx.get(f"{self.url}/models/v2/list/tasks").status_code == 401, "no key must answer 401")
        answer = self.http.get("/models/v2/list/tasks")
        check(answer.status_code == 200 and answer.json()["error"] is None, answer.text)

    def create_clusters(self) -> None:
        for model_id in (self.embedder, self.chat):
            body = {"capacity": {"min": 0, "desired": 1, "max": 2}, "timeout": WORKING_TIMEOUT_S}
            answer = self.http.put(f"/models/v2/{model_id}", json=body)
            check(answer.status_code in (201, 409), f"PUT {model_id}: {answer.status_code} {answer.text}")
        for model_id in (self.embedder, self.chat):
            wait_for(partial(self.running, model_id), STARTUP_S, f"{model_id} to run")

    def embeddings_with_the_sdk(self) -> None:
        result = self.sdk.model(self.embedder).run("a cat")
        check(result.error is None, f"SDK error: {result.error}")
        check(isinstance(result.output, list) and len(result.output) == 384, "384 floats expected")

    def chat_with_openai(self) -> None:
        messages: list[Any] = [{"role": "user", "content": "Say hello."}]
        answer = self.openai.chat.completions.create(model=self.chat, messages=messages, max_tokens=16)
        check(answer.choices[0].message.role == "assistant", str(answer))
        check(bool((answer.choices[0].message.content or "").strip()), "an empty answer")
        chunks = list(
            self.openai.chat.completions.create(model=self.chat, messages=messages, max_tokens=16, stream=True)
        )
        check(any(chunk.choices and chunk.choices[0].delta.content for chunk in chunks), "an empty stream")

    def idle_teardown_and_wake(self) -> None:
        embedder = self.embedder
        patched = self.http.patch(f"/models/v2/{embedder}", json={"timeout": IDLE_S})
        check(patched.status_code == 200, f"PATCH {embedder}: {patched.status_code} {patched.text}")
        wait_for(lambda: self.cluster(embedder)["status"] == "stopped", TEARDOWN_S, f"{embedder} to stop when idle")
        check(self.cluster(embedder)["replicas"] == 0, "a stopped cluster has no replicas")
        started = time.monotonic()
        answer = self.http.post(f"/models/v2/{embedder}", json={"text": "woken"})
        check(answer.status_code == 200 and len(answer.json()["output"]) == 384, answer.text)
        print(f"    woke from zero and answered in {time.monotonic() - started:.1f}s")

    def delete_clusters(self) -> None:
        for model_id in (self.embedder, self.chat):
            answer = self.http.delete(f"/models/v2/{model_id}")
            check(answer.status_code == 200, f"DELETE {model_id}: {answer.status_code} {answer.text}")
            check(self.http.get(f"/models/v2/{model_id}").status_code == 404, f"{model_id} still exists")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the gateway's base URL")
    parser.add_argument("--key", required=True, help="an API key of the tenant")
    parser.add_argument("--namespace", required=True, help="the key's tenant namespace (for messages only)")
    parser.add_argument("--embedding-model", default=EMBEDDER, help="a feature-extraction model (384 dimensions)")
    parser.add_argument("--chat-model", default=CHAT, help="a chat model")
    args = parser.parse_args()
    scenarios = Scenarios(args.url, args.key, embedder=args.embedding_model, chat=args.chat_model)
    steps = [
        scenarios.authentication,
        scenarios.create_clusters,
        scenarios.embeddings_with_the_sdk,
        scenarios.chat_with_openai,
        scenarios.idle_teardown_and_wake,
        scenarios.delete_clusters,
    ]
    for step in steps:
        started = time.monotonic()
        try:
            step()
        except (ScenarioFailed, httpx.HTTPError, openai.OpenAIError) as error:
            print(f"FAIL {step.__name__} ({args.namespace}): {error}", file=sys.stderr)
            return 1
        print(f"ok   {step.__name__} ({time.monotonic() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
