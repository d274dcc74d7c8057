"""Request routing on the real control plane: whose pods a cluster's requests reach.

Anyone allowed to create an EndpointSlice in a namespace can label one for a cluster's Service and list any
address in it; the gateway must route only from the slices the EndpointSlice controller keeps for the Service
the operator made for that ModelCluster. And a cluster found by name must serve the requested model: one that
serves another id answers 409, while a cluster under its legacy (8-digit) name is still found.

``openai-community/gpt2`` runs simulated pods here (KWOK: Ready, no process behind an unroutable address), so
a request that reaches its real pod answers 503 "no route"; one that reached a forged endpoint would answer
"pwned" from a server on this machine (on the local cluster's pod bridge: the apiserver refuses loopback
addresses in EndpointSlices).
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s

from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.naming import legacy_object_name, object_name
from modelcluster.devcluster import podnet

from support import Cluster, GatewayProcess, Tenant, eventually, or_none

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
MODEL = "openai-community/gpt2"
OTHER = "acme/not-gpt2"
NO_ROUTE = "no route to its pods"
Body = dict[str, Any]


class Pwned:
    """An HTTP server on ``address`` answering "pwned" to anything, counting what reached it."""

    def __init__(self, address: str) -> None:
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.hits += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = b'{"error": null, "output": "pwned"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.address = address
        # A plain TCP server: HTTPServer's bind looks its own name up in DNS, a packet off this machine.
        self.server = socketserver.ThreadingTCPServer((address, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pwned(cluster: Cluster) -> Iterator[Pwned]:
    if cluster.local is None:
        pytest.skip("needs the local control plane's pod bridge for an address the apiserver takes")
    server = Pwned(str(podnet.gateway(cluster.local)))
    assert httpx.get(f"http://{server.address}:{server.port}/", timeout=5).text.endswith('"pwned"}')
    server.hits = 0
    try:
        yield server
    finally:
        server.stop()


def api(gateway: GatewayProcess, tenant: Tenant, method: str, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 60)
    return httpx.request(method, f"{gateway.url}/models/v2/{path}", headers=tenant.headers, **kwargs)


def objects(cluster: Cluster) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(cluster.api_client)


def read_cluster(cluster: Cluster, namespace: str, name: str) -> Body | None:
    found: Body | None = or_none(
        lambda: objects(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    )
    return found


def create_cluster(cluster: Cluster, namespace: str, name: str, spec: Body) -> None:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelCluster", "metadata": {"name": name}, "spec": spec}
    objects(cluster).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def wait_ready(cluster: Cluster, namespace: str, name: str) -> None:
    def ready() -> bool:
        found = read_cluster(cluster, namespace, name) or {}
        return int((found.get("status") or {}).get("readyReplicas") or 0) >= 1

    eventually(ready, timeout=120, what=f"a ready pod of {namespace}/{name}")


def reaches_the_real_pod(gateway: GatewayProcess, tenant: Tenant) -> bool:
    answer = api(gateway, tenant, "POST", MODEL, json={"text": "hi"})
    assert "pwned" not in answer.text, answer.text
    return answer.status_code == 503 and NO_ROUTE in answer.json()["error"]


def forged_slice(name: str, service: str, address: str, port: int, **metadata: Any) -> Body:
    """An EndpointSlice made by hand for ``service``, pointing at ``address``:``port``."""
    labels = {
        "kubernetes.io/service-name": service,
        # As the operator's children are labelled (and their slices inherit): the gateway's watch selects on it.
        "app.kubernetes.io/managed-by": "modelcluster-operator",
        **metadata.pop("labels", {}),
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": labels, **metadata},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True}}],
    }


def test_a_forged_endpoint_slice_is_never_routed_to(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant, pwned: Pwned
) -> None:
    name = object_name(MODEL)
    created = api(gateway, tenant, "PUT", MODEL, json={"capacity": {"desired": 1, "max": 1}})
    assert created.status_code == 201, created.text
    wait_ready(cluster, tenant.namespace, name)
    eventually(lambda: reaches_the_real_pod(gateway, tenant), timeout=60, what="a request to reach the real pod")

    discovery = k8s.DiscoveryV1Api(cluster.api_client)
    service = cluster.core.read_namespaced_service(name, tenant.namespace)
    forged = [
        forged_slice(f"{name}-forged", name, pwned.address, pwned.port),
        # Mimicking the EndpointSlice controller, owned by a Service of that name that is not the real one.
        forged_slice(
            f"{name}-mimic",
            name,
            pwned.address,
            pwned.port,
            labels={"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
            ownerReferences=[
                {"apiVersion": "v1", "kind": "Service", "name": name, "uid": "0" * 8 + service.metadata.uid[8:]}
            ],
        ),
    ]
    for body in forged:
        discovery.create_namespaced_endpoint_slice(tenant.namespace, body)

    for _ in range(8):
        assert reaches_the_real_pod(gateway, tenant)
        completion = httpx.post(
            f"{gateway.url}/models/v2/openai/v1/completions",
            headers=tenant.headers,
            json={"model": MODEL, "prompt": "hi", "max_tokens": 4},
            timeout=60,
        )
        assert completion.status_code == 503 and "pwned" not in completion.text, completion.text
    assert pwned.hits == 0
    assert or_none(lambda: discovery.read_namespaced_endpoint_slice(f"{name}-forged", tenant.namespace)) is not None


def test_a_cluster_that_serves_another_model_answers_409_and_is_not_woken(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    name = object_name(MODEL)
    spec = {"model": OTHER, "task": "text-generation", "capacity": {"desired": 0, "max": 1}}
    create_cluster(cluster, tenant.namespace, name, spec)
    message = f"the cluster {name} serves {OTHER}, not {MODEL}"

    def conflict() -> bool:
        answer = api(gateway, tenant, "GET", MODEL)
        return answer.status_code == 409 and answer.json() == {"error": message, "output": None}

    eventually(conflict, timeout=30, what="the gateway to see the cluster")
    run = api(gateway, tenant, "POST", MODEL, json={"text": "hi"})
    assert run.status_code == 409 and run.json()["error"] == message
    for method in ("PATCH", "DELETE"):
        assert api(gateway, tenant, method, MODEL, json={"timeout": 77}).status_code == 409, method
    found = read_cluster(cluster, tenant.namespace, name)
    assert found is not None and found["spec"]["model"] == OTHER
    assert WAKE_ANNOTATION not in (found["metadata"].get("annotations") or {})
    assert found["spec"].get("timeout") != 77


def test_a_cluster_under_its_legacy_name_is_still_found_and_served(
    cluster: Cluster, gateway: GatewayProcess, tenant: Tenant
) -> None:
    legacy = legacy_object_name(MODEL)
    create_cluster(cluster, tenant.namespace, legacy, {"model": MODEL, "capacity": {"desired": 1, "max": 1}})

    def found() -> bool:
        answer = api(gateway, tenant, "GET", MODEL)
        return answer.status_code == 200 and answer.json()["cluster"]["modelId"] == MODEL

    eventually(found, timeout=30, what="the gateway to find the legacy-named cluster")
    wait_ready(cluster, tenant.namespace, legacy)
    # Routed to the legacy cluster's own pod (its Service is the operator's child of that cluster).
    eventually(lambda: reaches_the_real_pod(gateway, tenant), timeout=60, what="a request to reach its pod")
    assert api(gateway, tenant, "PUT", MODEL, json={}).status_code == 409
    assert read_cluster(cluster, tenant.namespace, object_name(MODEL)) is None
