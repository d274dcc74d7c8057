"""The gateway on the real control plane: cluster CRUD, tenants, keys and limits, and bad input."""

from __future__ import annotations

import subprocess
import threading
from typing import Any

import httpx
import pytest

from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.naming import object_name

from support import GIANT_MODEL, Cluster, GatewayProcess, Tenant, create_key, eventually

pytestmark = pytest.mark.cluster
GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
MODEL = "openai-community/gpt2"


def api(gateway: GatewayProcess, tenant: Tenant, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 30)
    return httpx.request(method, f"{gateway.url}/models/v2/{path}", headers=tenant.headers, **kwargs)


def stored(cluster: Cluster, namespace: str, model: str) -> dict[str, Any] | None:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] = k8s.CustomObjectsApi(cluster.api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, object_name(model)
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def test_cluster_crud_round_trip_is_visible_to_kubectl(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant, kubectl: list[str]
) -> None:
    created = api(gateway, tenant, "PUT", MODEL, json={"capacity": {"max": 5, "desired": 3}, "timeout": 3600})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["error"] is None
    assert body["cluster"]["capacity"] == {"min": 0, "desired": 3, "max": 5}
    assert body["cluster"]["timeout"] == 3600
    assert body["cluster"]["modelId"] == MODEL and body["cluster"]["task"] == "text-generation"

    listing = subprocess.run(
        [*kubectl, "get", "mc", "-n", tenant.namespace], capture_output=True, text=True, check=True
    )
    assert object_name(MODEL) in listing.stdout and MODEL in listing.stdout

    again = api(gateway, tenant, "PUT", MODEL, json={})
    assert again.status_code == 409 and again.json() == {"error": f"cluster for {MODEL} already exists", "output": None}

    read = eventually(
        lambda: (
            (r := api(gateway, tenant, "GET", MODEL)).status_code == 200 and r.json()["cluster"]["replicas"] == 3 and r
        ),
        timeout=60,
        what="the cluster to report 3 replicas",
    )
    view = read.json()["cluster"]
    assert view["status"] in ("deploying", "running")
    assert set(view) >= {"status", "capacity", "replicas", "readyReplicas", "lastRequestTime", "timeout"}
    assert read.json()["output"] == view

    patched = api(gateway, tenant, "PATCH", MODEL, json={"capacity": {"desired": 4}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["cluster"]["capacity"] == {"min": 0, "desired": 4, "max": 5}
    spec = stored(cluster, tenant.namespace, MODEL)
    assert spec is not None and spec["spec"]["capacity"]["desired"] == 4 and spec["spec"]["timeout"] == 3600

    clusters = api(gateway, tenant, "GET", "list/clusters").json()["output"]
    assert [c["modelId"] for c in clusters] == [MODEL]

    deleted = api(gateway, tenant, "DELETE", MODEL)
    assert deleted.status_code == 200 and deleted.json()["error"] is None
    eventually(lambda: stored(cluster, tenant.namespace, MODEL) is None, timeout=30, what="the object to be gone")
    assert api(gateway, tenant, "GET", MODEL).status_code == 404


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("PUT", {"capacity": {"desired": 6, "max": 5}}, "capacity.desired must be less than or equal to capacity.max"),
        ("PUT", {"capacity": {"desired": 0, "max": 0}}, "capacity.max must be at least 1"),
        ("PUT", {"timeout": -1}, "timeout: Input should be greater than or equal to 1"),
        ("PUT", {"timeout": "soon"}, "timeout: Input should be a valid integer"),
        ("PUT", {"capacty": {"max": 1}}, "capacty: Extra inputs are not permitted"),
        ("PUT", [1, 2], "invalid body"),
    ],
)
def test_bad_cluster_bodies_are_422_and_store_nothing(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant, method: str, body: Any, message: str
) -> None:
    answer = api(gateway, tenant, method, MODEL, json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["output"] is None and message in answer.json()["error"]
    assert stored(cluster, tenant.namespace, MODEL) is None


def test_patch_rejected_by_the_apiserver_names_the_rule_and_changes_nothing(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    assert api(gateway, tenant, "PUT", MODEL, json={"capacity": {"desired": 1, "max": 2}}).status_code == 201
    answer = api(gateway, tenant, "PATCH", MODEL, json={"capacity": {"desired": 3}})
    assert answer.status_code == 422, answer.text
    assert "capacity.desired must be less than or equal to capacity.max" in answer.json()["error"]
    found = stored(cluster, tenant.namespace, MODEL)
    assert found is not None and found["spec"]["capacity"]["desired"] == 1
    assert api(gateway, tenant, "PATCH", MODEL, json={}).status_code == 422
    assert api(gateway, tenant, "PATCH", MODEL, content=b"{not json").status_code == 422


def test_bad_inference_input_creates_and_wakes_nothing(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    cases: list[tuple[str, bytes, int, str]] = [
        (MODEL, b"{", 422, "the body is not valid JSON"),
        (MODEL, b'{"text": 5}', 422, "invalid body: text"),
        (MODEL, b'{"txt": "a"}', 422, "txt: Extra inputs are not permitted"),
        (MODEL, b'{"messages": [{"role": "user", "content": "hi"}]}', 422, "text-generation does not take `messages`"),
        (MODEL, b'{"url": "http://10.0.0.1/x.png"}', 422, "text-generation does not take `url`"),
        ("sentence-transformers/all-MiniLM-L6-v2", b'{"text": "a", "stream": true}', 422, "does not stream"),
        ("no-such/model", b'{"text": "a"}', 404, "is not in the catalog"),
        ("bad..id/x", b'{"text": "a"}', 422, "invalid model id"),
    ]
    for model, raw, status, message in cases:
        answer = api(gateway, tenant, "POST", model, content=raw)
        assert answer.status_code == status, (model, raw, answer.text)
        assert answer.json()["output"] is None and message in answer.json()["error"], answer.text
    too_big = api(gateway, tenant, "POST", MODEL, content=b'{"text": "' + b"a" * (33 * 1024 * 1024) + b'"}')
    assert too_big.status_code == 413 and too_big.json()["output"] is None
    assert api(gateway, tenant, "GET", "list/clusters").json()["output"] == []
    assert stored(cluster, tenant.namespace, MODEL) is None


def test_tenants_never_see_each_others_clusters(gateway: GatewayProcess, tenant: Tenant, other_tenant: Tenant) -> None:
    assert api(gateway, tenant, "PUT", MODEL, json={"capacity": {"desired": 1}}).status_code == 201
    assert api(gateway, other_tenant, "GET", "list/clusters").json()["output"] == []
    for method, body in (("GET", None), ("PATCH", {"timeout": 60}), ("DELETE", None)):
        answer = api(gateway, other_tenant, method, MODEL, json=body)
        assert answer.status_code == 404, (method, answer.text)
        assert answer.json() == {"error": f"no cluster for {MODEL}", "output": None}
    assert api(gateway, tenant, "GET", MODEL).json()["cluster"]["timeout"] == 300
    # Running the model in another tenant uses (and would create) that tenant's own cluster, never this one.
    listed = api(gateway, other_tenant, "GET", "list/models", params={"modelId": MODEL}).json()["output"]
    assert [item["task"] for item in listed] == ["text-generation"]


def test_missing_or_wrong_keys_are_401(gateway: GatewayProcess, tenant: Tenant) -> None:
    url = f"{gateway.url}/models/v2/list/tasks"
    for headers in (
        {},
        {"Authorization": "Key nope"},
        {"Authorization": tenant.key[:-2] + "xx"},
        {"Authorization": ""},
    ):
        answer = httpx.get(url, headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json() == {"error": "Unauthorized", "output": None}
    assert httpx.get(url, headers={"Authorization": tenant.key}, timeout=10).status_code == 200
    openai = httpx.get(f"{gateway.url}/models/v2/openai/v1/models", timeout=10)
    assert openai.status_code == 401 and openai.json()["error"]["type"] == "authentication_error"
    assert tenant.key not in gateway.log_path.read_text()


def test_a_failed_cluster_answers_503_at_once_with_its_reason(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    eventually(lambda: api(gateway, tenant, "PUT", GIANT_MODEL, json={}).status_code == 201, timeout=10, what="create")
    eventually(
        lambda: api(gateway, tenant, "GET", GIANT_MODEL).json()["cluster"]["status"] == "failed",
        timeout=60,
        what="the giant model to fail scheduling",
    )
    answer = api(gateway, tenant, "POST", GIANT_MODEL, json={"text": "hi"})
    assert answer.status_code == 503
    assert "nvidia.com/gpu" in answer.json()["error"] and answer.headers["Retry-After"]


def test_concurrency_limit_per_key_answers_429(cluster: Cluster, gateway: GatewayProcess, tenant: Tenant) -> None:
    limited = Tenant(tenant.namespace, create_key(cluster, tenant.namespace, concurrency=1))
    eventually(lambda: api(gateway, limited, "GET", "list/tasks").status_code == 200, timeout=30, what="the new key")
    # A stopped cluster that cannot be scheduled: the request wakes it and holds the key's one slot
    # until the operator reports the failure (its unschedulable deadline is 10 s under test).
    assert api(gateway, limited, "PUT", GIANT_MODEL, json={"capacity": {"desired": 0, "max": 1}}).status_code == 201
    held: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: held.append(api(gateway, limited, "POST", GIANT_MODEL, json={"text": "hi"}, timeout=150))
    )
    worker.start()
    labels = f'model="{object_name(GIANT_MODEL)}",namespace="{tenant.namespace}"'
    gauge = f"modelcluster_gateway_held_requests{{{labels}}} 1.0"
    eventually(lambda: gauge in gateway.metrics(), timeout=20, what=f"a held request ({gauge})")
    second = api(gateway, limited, "GET", "list/tasks")
    assert second.status_code == 429
    assert second.json() == {"error": "Rate limit exceeded", "output": None}
    # Another key of the same tenant has its own limit.
    assert api(gateway, tenant, "GET", "list/tasks").status_code == 200
    worker.join(timeout=140)
    assert held and held[0].status_code == 503, held
    assert "nvidia.com/gpu" in held[0].json()["error"]
    found = stored(cluster, tenant.namespace, GIANT_MODEL)
    assert found is not None and WAKE_ANNOTATION in found["metadata"]["annotations"]
    assert api(gateway, limited, "GET", "list/tasks").status_code == 200
