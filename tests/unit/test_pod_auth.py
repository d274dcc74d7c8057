"""Pod credentials: derived per cluster from the signing key, checked by the runtime on every route but /health,
given to the pods only as a hash, and presented by the gateway's proxy and the autoscaler's scrape."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from modelcluster.api.pod_auth import (
    VERIFIER_ENV,
    CredentialIssuer,
    InvalidSigningKey,
    accepts,
    authorization,
    presented,
    verifier_of,
)
from modelcluster.catalog import Catalog
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.operator.builders.deployment import build_deployment
from modelcluster.operator.builders.plan import plan
from modelcluster.operator.builders.workload import PodOptions, Workload
from modelcluster.runtime.app import create_app
from modelcluster.runtime.settings import RuntimeSettings

from support import FakeKube
from support.routing import slice_metadata, trusting

KEY = "k" * 40
ISSUER = CredentialIssuer(KEY)


def test_a_credential_is_bound_to_one_cluster_its_uid_and_the_key() -> None:
    mine = ISSUER.credential("team-a", "gpt2-x", "uid-1")
    assert mine == CredentialIssuer(KEY).credential("team-a", "gpt2-x", "uid-1")
    others = {
        ISSUER.credential("team-b", "gpt2-x", "uid-1"),
        ISSUER.credential("team-a", "gpt2-y", "uid-1"),
        ISSUER.credential("team-a", "gpt2-x", "uid-2"),  # the same name, re-created
        ISSUER.credential("team-a", "gpt2-x", "uid-1", kind="WarmPool"),
        CredentialIssuer("o" * 40).credential("team-a", "gpt2-x", "uid-1"),
    }
    assert mine not in others and len(others) == 5
    assert len(mine) == 64


@pytest.mark.parametrize("parts", [("", "n", "u"), ("a/b", "n", "u"), ("a", "n/x", "u"), ("a", "n", "")])
def test_subjects_are_unambiguous(parts: tuple[str, str, str]) -> None:
    with pytest.raises(ValueError):
        ISSUER.credential(*parts)


def test_the_signing_key_must_be_long_and_never_shows() -> None:
    with pytest.raises(InvalidSigningKey, match="at least 32"):
        CredentialIssuer("short")
    assert KEY not in repr(ISSUER) and KEY not in str(ISSUER)


def test_only_the_bearer_credential_whose_hash_is_the_verifier_is_accepted() -> None:
    credential = ISSUER.credential("team-a", "gpt2-x", "uid-1")
    verifier = verifier_of(credential)
    assert accepts(verifier, f"Bearer {credential}")
    assert accepts(verifier, authorization(credential)["Authorization"])
    assert accepts(verifier, f"bearer  {credential}")
    for header in (
        None,
        "",
        credential,
        f"Key {credential}",
        f"Bearer {credential} extra",
        f"Bearer {ISSUER.credential('team-b', 'gpt2-x', 'uid-1')}",
        f"Bearer {verifier}",  # the hash itself, as read from the pod spec
        "Bearer " + "a" * 500,
    ):
        assert not accepts(verifier, header), header
    assert presented("Bearer " + "a" * 500) is None


def _container(workload: Workload) -> dict[str, Any]:
    container: dict[str, Any] = build_deployment(workload, PodOptions())["spec"]["template"]["spec"]["containers"][0]
    return container


def test_pods_get_the_hash_of_their_clusters_credential_and_never_the_credential(
    make_workload: Callable[..., Workload], default_catalog: Catalog
) -> None:
    body = {
        "metadata": {"name": "gpt2-x", "namespace": "team-a", "uid": "uid-1", "generation": 1},
        "spec": {"model": "openai-community/gpt2"},
    }
    planned = plan(body, default_catalog, PodOptions(), datetime.now(UTC), ISSUER)
    assert planned.workload is not None
    container = _container(planned.workload)
    env = {item["name"]: item.get("value") for item in container["env"]}
    credential = ISSUER.credential("team-a", "gpt2-x", "uid-1")
    assert env[VERIFIER_ENV] == verifier_of(credential)
    assert credential not in str(build_deployment(planned.workload, PodOptions()))
    assert KEY not in str(build_deployment(planned.workload, PodOptions()))
    # Without an issuer (tests of other things) nothing is set.
    assert VERIFIER_ENV not in {item["name"] for item in _container(make_workload())["env"]}


def _runtime(verifier: str | None) -> TestClient:
    settings = RuntimeSettings(model_id="org/none", task="feature-extraction", device="cpu", credential_sha256=verifier)
    # No lifespan: the model never loads, which /health, /status and /metrics report without it.
    return TestClient(create_app(settings))


def test_the_runtime_answers_only_its_clusters_credential_but_health_stays_open() -> None:
    credential = ISSUER.credential("team-a", "gpt2-x", "uid-1")
    other = ISSUER.credential("team-b", "gpt2-x", "uid-1")
    client = _runtime(verifier_of(credential))
    for method, path in (("POST", "/run"), ("GET", "/status"), ("GET", "/metrics"), ("POST", "/admin/load")):
        for headers in ({}, authorization(other), {"Authorization": f"Key {credential}"}):
            answer = client.request(method, path, headers=headers, json={"text": "hi"})
            assert answer.status_code == 401, (path, answer.text)
            assert answer.json() == {"error": "Unauthorized", "output": None}
    assert client.get("/metrics", headers=authorization(credential)).status_code == 200
    assert client.get("/status", headers=authorization(credential)).status_code == 200
    # Past the check: the model is not loaded yet (503), not refused.
    assert client.post("/run", headers=authorization(credential), json={"text": "hi"}).status_code == 503
    # The kubelet's probe: no credential needed (503 here: not loaded).
    assert client.get("/health").status_code == 503


def test_a_runtime_without_a_verifier_serves_everyone() -> None:
    assert _runtime(None).get("/metrics").status_code == 200


def test_a_malformed_verifier_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        RuntimeSettings(model_id="org/none", task="feature-extraction", credential_sha256="abc")


def test_a_websocket_without_the_credential_is_closed_before_the_handshake() -> None:
    credential = ISSUER.credential("team-a", "gpt2-x", "uid-1")
    client = _runtime(verifier_of(credential))
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/admin/stream"):
        pass
    assert refused.value.code == 1008


async def test_the_gateway_signs_each_request_for_the_clusters_uid(default_catalog: Catalog) -> None:
    seen: list[str | None] = []

    async def run(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"error": None, "output": "ok"})

    app = web.Application()
    app.router.add_post("/run", run)
    pod = TestServer(app, host="127.0.0.1")
    await pod.start_server()
    gateway = Gateway(settings=GatewaySettings(), catalog=default_catalog, kube=FakeKube(), credentials=ISSUER)
    key = ("team-a", "gpt2-x")
    gateway.clusters.put({"metadata": {"namespace": key[0], "name": key[1], "uid": "mc-uid-gpt2-x"}, "spec": {}})
    trusting(gateway.endpoints, key)
    assert pod.port is not None
    slice_ = {
        "metadata": slice_metadata("gpt2-x-abc", *key),
        "ports": [{"name": "http", "port": pod.port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "p"}}],
    }
    gateway.endpoints.event("ADDED", slice_)
    await gateway.proxy.start()
    try:
        upstream = await gateway.proxy.send(key, b"{}", {"Content-Type": "application/json"})
        upstream.close(reuse=True)
    finally:
        await gateway.proxy.stop()
        await pod.close()
    assert seen == [f"Bearer {ISSUER.credential('team-a', 'gpt2-x', 'mc-uid-gpt2-x')}"]
