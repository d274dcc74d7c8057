"""Tenants on the real control plane: the operator's namespace and ResourceQuota, quotas enforced by the
gateway and by the apiserver, QuotaExceeded from refused pods, one cluster per catalog id whatever its case,
and bad Tenants refused."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.api.naming import object_name

from support import (
    Cluster,
    GatewayProcess,
    OperatorProcess,
    Tenant,
    create_key,
    drop_namespace,
    eventually,
    modelcluster_body,
    or_none,
)

pytestmark = pytest.mark.cluster

GROUP, VERSION = "modelcluster.dev", "v1alpha1"
MODEL = "openai-community/gpt2"  # a catalog model on a 1-GPU tier, text-generation
OTHER = "google/flan-t5-base"
GENERATOR = "Nexusflow/NexusRaven-V2-13B"  # text-generation: served by the OpenAI completions route
QUOTA = "modelcluster-tenant"
CLI = Path(sys.executable).with_name("modelcluster")
#: A cluster that runs no pod until a request wakes it.
IDLE = {"min": 0, "desired": 0, "max": 1}
#: Seconds until a Tenant is ready: on a fresh control plane the quota controller starts counting ModelClusters
#: only once it has discovered their CRD (it looks every 30 s).
READY_DEADLINE = 90


def _custom(cluster: Cluster) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(cluster.api_client)


def _tenant_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Tenant", "metadata": {"name": name}, "spec": spec}


def _apply(kubectl: list[str], body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(body), text=True, capture_output=True, timeout=60
    )


def _read_tenant(cluster: Cluster, name: str) -> dict[str, Any]:
    found: dict[str, Any] = _custom(cluster).get_cluster_custom_object(GROUP, VERSION, "tenants", name)
    return found


def _ready(cluster: Cluster, name: str) -> dict[str, Any] | None:
    conditions = (_read_tenant(cluster, name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == "Ready"), None)


def _ready_is(cluster: Cluster, name: str, status: str) -> dict[str, Any] | None:
    ready = _ready(cluster, name)
    return ready if ready is not None and ready["status"] == status else None


def _reason_is(cluster: Cluster, name: str, reason: str) -> dict[str, Any] | None:
    ready = _ready(cluster, name)
    return ready if ready is not None and ready["reason"] == reason else None


@pytest.fixture
def tenant_name(cluster: Cluster) -> Iterator[str]:
    name = f"tn-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        drop_namespace(cluster.core, name)


def _clusters(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    listed = _custom(cluster).list_namespaced_custom_object(GROUP, VERSION, namespace, "modelclusters")
    return list(listed["items"])


def _tenant_with_key(
    cluster: Cluster, kubectl: list[str], gateway: GatewayProcess, name: str, quotas: dict[str, int]
) -> Tenant:
    """A Tenant with ``quotas``, ready, and a key the gateway knows, with the gateway holding the Tenant."""
    applied = _apply(kubectl, _tenant_body(name, {"quotas": quotas}))
    assert applied.returncode == 0, applied.stderr
    eventually(lambda: _ready_is(cluster, name, "True"), timeout=READY_DEADLINE, what=f"Tenant {name} to be ready")
    made = Tenant(name, create_key(cluster, name))
    headers = made.headers

    def known() -> bool:
        return httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=headers, timeout=5).status_code == 200

    eventually(known, timeout=30, what=f"the gateway to learn the key of {name}")
    return made


def test_a_tenant_applied_with_kubectl_gets_its_namespace_and_quota_and_the_apiserver_enforces_it(
    cluster: Cluster, operator: OperatorProcess, kubectl: list[str], tenant_name: str
) -> None:
    applied = _apply(
        kubectl,
        _tenant_body(tenant_name, {"quotas": {"modelClusters": 1, "gpus": 2, "pods": 3, "replicas": 4}}),
    )
    assert applied.returncode == 0, applied.stderr
    ready = eventually(
        lambda: _ready_is(cluster, tenant_name, "True"), timeout=READY_DEADLINE, what="the Tenant to be ready"
    )
    assert ready["reason"] == "Reconciled"
    namespace = cluster.core.read_namespace(tenant_name)
    assert namespace.metadata.labels["modelcluster.dev/tenant"] == tenant_name
    quota = cluster.core.read_namespaced_resource_quota(QUOTA, tenant_name)
    assert quota.spec.hard == {"count/modelclusters.modelcluster.dev": "1", "requests.nvidia.com/gpu": "2", "pods": "3"}
    assert quota.metadata.owner_references[0].kind == "Tenant"

    first = _apply(kubectl, modelcluster_body(MODEL, namespace=tenant_name, capacity=IDLE))
    assert first.returncode == 0, first.stderr
    second = _apply(kubectl, modelcluster_body(OTHER, namespace=tenant_name))
    assert second.returncode != 0
    assert "exceeded quota" in second.stderr and "count/modelclusters.modelcluster.dev" in second.stderr
    assert [c["spec"]["model"] for c in _clusters(cluster, tenant_name)] == [MODEL]

    # The status follows what the ResourceQuota counts.
    eventually(
        lambda: ((_read_tenant(cluster, tenant_name).get("status") or {}).get("used") or {}).get("modelClusters") == 1,
        timeout=40,
        what="the Tenant's status to count its cluster",
    )
    # A change of quota reaches the ResourceQuota.
    patched = subprocess.run(
        [*kubectl, "patch", "tenant", tenant_name, "--type=merge", "-p", json.dumps({"spec": {"quotas": {"gpus": 5}}})],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert patched.returncode == 0, patched.stderr
    eventually(
        lambda: (
            cluster.core.read_namespaced_resource_quota(QUOTA, tenant_name).spec.hard["requests.nvidia.com/gpu"] == "5"
        ),
        timeout=30,
        what="the new GPU quota in the ResourceQuota",
    )


def test_a_tenants_defaults_shape_its_new_clusters_and_its_namespace_gets_default_requests(
    cluster: Cluster, gateway: GatewayProcess, kubectl: list[str], tenant_name: str
) -> None:
    defaults = {"capacity": {"min": 0, "desired": 0, "max": 2}, "timeout": 900, "container": {"cpu": "250m"}}
    applied = _apply(kubectl, _tenant_body(tenant_name, {"defaults": defaults}))
    assert applied.returncode == 0, applied.stderr
    eventually(lambda: _ready_is(cluster, tenant_name, "True"), timeout=READY_DEADLINE, what="the Tenant ready")
    # The LimitRange: the containers' default requests (memory from the CRD's default), owned by the Tenant.
    limits = cluster.core.read_namespaced_limit_range("modelcluster-tenant", tenant_name)
    assert [(item.type, item.default_request) for item in limits.spec.limits] == [
        ("Container", {"cpu": "250m", "memory": "128Mi"})
    ]
    assert limits.metadata.owner_references[0].kind == "Tenant"
    # A pod made by hand without requests gets them, so a quota on requests can count it.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "by-hand", "namespace": tenant_name},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/none:1"}]},
    }
    made_pod = cluster.core.create_namespaced_pod(tenant_name, pod)
    assert made_pod.spec.containers[0].resources.requests == {"cpu": "250m", "memory": "128Mi"}
    cluster.core.delete_namespaced_pod("by-hand", tenant_name, grace_period_seconds=0)

    made = Tenant(tenant_name, create_key(cluster, tenant_name))
    eventually(
        lambda: httpx.get(f"{gateway.url}/models/v2/list/tasks", headers=made.headers, timeout=5).status_code == 200,
        timeout=30,
        what="the gateway to learn the key",
    )
    base = f"{gateway.url}/models/v2"
    # A PUT without capacity or timeout gets the tenant's; one that states them keeps its own, whole.
    plain = httpx.put(f"{base}/{MODEL}", headers=made.headers, json={}, timeout=30)
    assert plain.status_code == 201, plain.text
    assert plain.json()["cluster"]["capacity"] == {"min": 0, "desired": 0, "max": 2}
    assert plain.json()["cluster"]["timeout"] == 900
    stated = httpx.put(
        f"{base}/{OTHER}", headers=made.headers, json={"capacity": {"max": 1}, "timeout": 60}, timeout=30
    )
    assert stated.status_code == 201, stated.text
    assert stated.json()["cluster"]["capacity"] == {"min": 0, "desired": 1, "max": 1}
    assert stated.json()["cluster"]["timeout"] == 60
    specs = {c["spec"]["model"]: c["spec"] for c in _clusters(cluster, tenant_name)}
    assert specs[MODEL]["capacity"] == {"min": 0, "desired": 0, "max": 2} and specs[MODEL]["timeout"] == 900
    # A cluster applied with kubectl gets the CRD's defaults.
    by_hand = _apply(kubectl, modelcluster_body(GENERATOR, namespace=tenant_name))
    assert by_hand.returncode == 0, by_hand.stderr
    specs = {c["spec"]["model"]: c["spec"] for c in _clusters(cluster, tenant_name)}
    assert specs[GENERATOR]["timeout"] == 300


def test_the_gateway_refuses_put_and_post_auto_create_past_the_cluster_quota(
    cluster: Cluster, gateway: GatewayProcess, kubectl: list[str], tenant_name: str
) -> None:
    made = _tenant_with_key(cluster, kubectl, gateway, tenant_name, {"modelClusters": 1, "replicas": 2})
    base = f"{gateway.url}/models/v2"
    quiet = {"capacity": IDLE}
    created = httpx.put(f"{base}/{MODEL}", headers=made.headers, json=quiet, timeout=30)
    assert created.status_code == 201, created.text

    def refused(answer: httpx.Response) -> None:
        assert answer.status_code == 403, answer.text
        body = answer.json()
        assert body["output"] is None
        assert "quota exceeded" in body["error"] and "modelClusters" in body["error"], body
        assert "may have 1 ModelClusters" in body["error"] and "has 1" in body["error"], body

    refused(httpx.put(f"{base}/{OTHER}", headers=made.headers, json=quiet, timeout=30))
    refused(httpx.post(f"{base}/{OTHER}", headers=made.headers, json={"text": "hello"}, timeout=30))
    # On the OpenAI routes too (a catalog model the tenant has no cluster for), in the OpenAI shape.
    openai = httpx.post(
        f"{base}/openai/v1/completions", headers=made.headers, json={"model": GENERATOR, "prompt": "hi"}, timeout=30
    )
    assert openai.status_code == 403, openai.text
    assert "quota exceeded" in openai.json()["error"]["message"]
    # Nothing was created.
    assert [c["spec"]["model"] for c in _clusters(cluster, tenant_name)] == [MODEL]

    # PATCH past the replicas quota (the sum of capacity.max) is refused, naming the quota and its use.
    patched = httpx.patch(f"{base}/{MODEL}", headers=made.headers, json={"capacity": {"max": 3}}, timeout=30)
    assert patched.status_code == 403, patched.text
    assert "quota replicas" in patched.json()["error"] and "asks for 3" in patched.json()["error"]
    assert _clusters(cluster, tenant_name)[0]["spec"]["capacity"]["max"] == 1
    within = httpx.patch(f"{base}/{MODEL}", headers=made.headers, json={"capacity": {"max": 2}}, timeout=30)
    assert within.status_code == 200, within.text


def test_concurrent_puts_cannot_take_a_tenant_past_its_replicas_quota(
    cluster: Cluster, gateway: GatewayProcess, kubectl: list[str], tenant_name: str
) -> None:
    """The replicas quota is the gateway's alone (no ResourceQuota counts capacity.max): writes racing each other
    must still be checked one after the other."""
    made = _tenant_with_key(cluster, kubectl, gateway, tenant_name, {"replicas": 2})
    models = [MODEL, OTHER, GENERATOR, "Qwen/Qwen3-4B", "google/vit-base-patch16-224", "facebook/detr-resnet-50"]
    models += ["dslim/bert-base-NER", "deepset/roberta-base-squad2"]

    async def put_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(headers=made.headers, timeout=60) as client:
            return await asyncio.gather(
                *(client.put(f"{gateway.url}/models/v2/{model}", json={"capacity": IDLE}) for model in models)
            )

    answers = asyncio.run(put_all())
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [201, 201] + [403] * 6, [answer.text for answer in answers]
    assert all("quota replicas" in answer.json()["error"] for answer in answers if answer.status_code == 403)
    assert len(_clusters(cluster, tenant_name)) == 2


def test_a_gpu_quota_below_a_clusters_need_fails_it_with_quota_exceeded(
    cluster: Cluster, operator: OperatorProcess, kubectl: list[str], tenant_name: str
) -> None:
    applied = _apply(kubectl, _tenant_body(tenant_name, {"quotas": {"gpus": 0}}))
    assert applied.returncode == 0, applied.stderr
    eventually(lambda: _ready_is(cluster, tenant_name, "True"), timeout=READY_DEADLINE, what="the Tenant to be ready")
    eventually(
        lambda: or_none(lambda: cluster.core.read_namespaced_resource_quota(QUOTA, tenant_name).status.hard),
        timeout=30,
        what="the ResourceQuota to be counted",
    )
    created = _apply(kubectl, modelcluster_body(MODEL, namespace=tenant_name))
    assert created.returncode == 0, created.stderr
    name = object_name(MODEL)

    def failed() -> dict[str, Any] | None:
        body = _custom(cluster).get_namespaced_custom_object(GROUP, VERSION, tenant_name, "modelclusters", name)
        status = body.get("status") or {}
        return status if status.get("status") == "failed" else None

    status = eventually(failed, timeout=30, what="the cluster to fail on the GPU quota")
    assert status["reason"] == "QuotaExceeded"
    assert "exceeded quota" in status["message"] and "requests.nvidia.com/gpu" in status["message"]


def _variants(model_id: str, count: int) -> list[str]:
    """``count`` distinct spellings of ``model_id`` that differ only in case."""
    letters = [i for i, char in enumerate(model_id) if char.isalpha()]
    found: list[str] = []
    mask = 0
    while len(found) < count:
        chars = list(model_id.lower())
        for bit, index in enumerate(letters):
            if mask >> bit & 1:
                chars[index] = chars[index].upper()
        spelled = "".join(chars)
        if spelled not in found:
            found.append(spelled)
        mask += 1
    return found


def test_twenty_case_variants_of_a_catalog_id_reach_one_cluster(
    cluster: Cluster, gateway: GatewayProcess, kubectl: list[str], tenant_name: str
) -> None:
    made = _tenant_with_key(cluster, kubectl, gateway, tenant_name, {})
    model = "Qwen/Qwen3-4B"
    variants = _variants(model, 20)
    assert len(set(variants)) == 20
    base = f"{gateway.url}/models/v2"

    async def post_all() -> list[int]:
        async with httpx.AsyncClient(headers=made.headers, timeout=5) as client:

            async def post(spelled: str) -> int:
                try:
                    answer = await client.post(
                        f"{base}/{spelled}", json={"messages": [{"role": "user", "content": "hi"}]}
                    )
                except httpx.TimeoutException:
                    return 0  # held for a pod: the cluster exists
                return answer.status_code

            return await asyncio.gather(*(post(spelled) for spelled in variants[:10]))

    statuses = asyncio.run(post_all())
    try:  # the OpenAI route with yet another spelling reaches the same cluster
        chat = httpx.post(
            f"{base}/openai/v1/chat/completions",
            headers=made.headers,
            json={"model": model.upper(), "messages": [{"role": "user", "content": "hi"}]},
            timeout=5,
        )
        statuses.append(chat.status_code)
    except httpx.TimeoutException:
        pass
    assert 403 not in statuses and 404 not in statuses and 422 not in statuses, statuses
    for spelled in variants[10:]:
        answer = httpx.put(f"{base}/{spelled}", headers=made.headers, json={}, timeout=30)
        assert answer.status_code == 409, answer.text  # the one cluster exists already
        shown = httpx.get(f"{base}/{spelled}", headers=made.headers, timeout=30)
        assert shown.status_code == 200 and shown.json()["output"]["modelId"] == model
    assert [c["spec"]["model"] for c in _clusters(cluster, tenant_name)] == [model]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"namespace": "kube-system"}, "system namespace"),
        ({"namespace": "default"}, "system namespace"),
        ({"quotas": {"gpus": -1}}, "spec.quotas.gpus"),
        ({"quotas": {"modelClusters": "many"}}, "spec.quotas.modelClusters"),
        ({"budget": {"amount": -5, "period": "day"}}, "spec.budget.amount"),
        ({"budget": {"amount": "lots", "period": "day"}}, "spec.budget.amount"),
        ({"budget": {"amount": 5, "period": "year"}}, "spec.budget.period"),
        ({"defaults": {"capacity": {"min": 2, "desired": 1, "max": 3}}}, "capacity.min must be less than or equal"),
        ({"defaults": {"capacity": {"desired": 1, "max": 0}}}, "spec.defaults.capacity"),
        ({"defaults": {"capacity": {"desired": -1}}}, "spec.defaults.capacity.desired"),
        ({"defaults": {"timeout": 0}}, "spec.defaults.timeout"),
        ({"defaults": {"timeout": "soon"}}, "spec.defaults.timeout"),
        ({"defaults": {"container": {"cpu": "-1"}}}, "spec.defaults.container.cpu"),
        ({"defaults": {"container": {"memory": "lots"}}}, "spec.defaults.container.memory"),
    ],
)
def test_bad_tenants_are_refused_by_the_apiserver(
    cluster: Cluster, kubectl: list[str], operator: OperatorProcess, spec: dict[str, Any], words: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:8]}"
    applied = _apply(kubectl, _tenant_body(name, spec))
    assert applied.returncode != 0
    assert words in applied.stderr, applied.stderr
    with pytest.raises(ApiException) as missing:
        _read_tenant(cluster, name)
    assert missing.value.status == 404


def test_a_tenant_of_a_system_or_busy_namespace_is_refused_with_the_reason(
    cluster: Cluster, kubectl: list[str], operator: OperatorProcess, namespace: str, tenant_name: str
) -> None:
    # The operator's own namespace: accepted by the apiserver, refused by the operator.
    system = _apply(kubectl, _tenant_body(tenant_name, {"namespace": OperatorProcess.LEASE_NAMESPACE}))
    assert system.returncode == 0, system.stderr
    refused = eventually(lambda: _reason_is(cluster, tenant_name, "SystemNamespace"), timeout=30, what="the refusal")
    assert refused["reason"] == "SystemNamespace" and OperatorProcess.LEASE_NAMESPACE in refused["message"]
    labels = cluster.core.read_namespace(OperatorProcess.LEASE_NAMESPACE).metadata.labels or {}
    assert "modelcluster.dev/tenant" not in labels

    # A namespace that runs someone else's Deployment.
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }
    assert _apply(kubectl, deployment).returncode == 0
    busy = f"busy-{uuid.uuid4().hex[:6]}"
    try:
        assert _apply(kubectl, _tenant_body(busy, {"namespace": namespace})).returncode == 0
        refused = eventually(lambda: _reason_is(cluster, busy, "NamespaceInUse"), timeout=30, what="the refusal")
        assert refused["reason"] == "NamespaceInUse" and "Deployment/web" in refused["message"]
        assert "modelcluster.dev/tenant" not in (cluster.core.read_namespace(namespace).metadata.labels or {})
        assert not cluster.core.list_namespaced_resource_quota(namespace).items
    finally:
        _custom(cluster).delete_cluster_custom_object(GROUP, VERSION, "tenants", busy)


def test_an_existing_tenant_namespace_is_adopted(
    cluster: Cluster, operator: OperatorProcess, kubectl: list[str], tenant_name: str
) -> None:
    # A tenant namespace from before Tenants (``keys create`` labelled it), with a cluster running in it.
    create_key(cluster, tenant_name)
    _custom(cluster).delete_cluster_custom_object(GROUP, VERSION, "tenants", tenant_name)  # as before Tenants
    assert _apply(kubectl, modelcluster_body(MODEL, namespace=tenant_name, capacity=IDLE)).returncode == 0
    assert _apply(kubectl, _tenant_body(tenant_name, {"quotas": {"modelClusters": 3}})).returncode == 0
    eventually(lambda: _ready_is(cluster, tenant_name, "True"), timeout=READY_DEADLINE, what="the Tenant to be ready")
    assert cluster.core.read_namespaced_resource_quota(QUOTA, tenant_name).spec.hard == {
        "count/modelclusters.modelcluster.dev": "3"
    }


def _cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
    return subprocess.run([str(CLI), "tenants", *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_tenants_commands_create_list_set_and_delete(
    cluster: Cluster, operator: OperatorProcess, tenant_name: str
) -> None:
    created = _cli(cluster, "create", tenant_name, "--model-clusters", "2", "--gpus", "1", "--budget", "12.50")
    assert created.returncode == 0, created.stderr
    assert _cli(cluster, "create", tenant_name).returncode != 0  # exists: change it with set
    eventually(lambda: _ready_is(cluster, tenant_name, "True"), timeout=READY_DEADLINE, what="the Tenant to be ready")
    spec = _read_tenant(cluster, tenant_name)["spec"]
    assert spec == {"quotas": {"modelClusters": 2, "gpus": 1}, "budget": {"amount": 12.5, "period": "month"}}

    changed = _cli(cluster, "set", tenant_name, "--gpus", "3", "--unset", "model-clusters", "--budget-period", "week")
    assert changed.returncode == 0, changed.stderr
    spec = _read_tenant(cluster, tenant_name)["spec"]
    assert spec == {"quotas": {"gpus": 3}, "budget": {"amount": 12.5, "period": "week"}}
    eventually(
        lambda: (
            cluster.core.read_namespaced_resource_quota(QUOTA, tenant_name).spec.hard
            == {"requests.nvidia.com/gpu": "3"}
        ),
        timeout=30,
        what="the ResourceQuota to follow the change",
    )
    assert _cli(cluster, "set", tenant_name, "--gpus", "-1").returncode == 2  # refused before any call

    listed = _cli(cluster, "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith(f"{tenant_name} ")]
    assert row[:4] == [tenant_name, tenant_name, "True", "Reconciled"]
    as_json = json.loads(_cli(cluster, "list", "-o", "json").stdout)
    assert tenant_name in {item["metadata"]["name"] for item in as_json}

    deleted = _cli(cluster, "delete", tenant_name)
    assert deleted.returncode == 0, deleted.stderr
    assert or_none(lambda: _read_tenant(cluster, tenant_name)) is None
    assert cluster.core.read_namespace(tenant_name).metadata.name == tenant_name  # the namespace stays
    eventually(
        lambda: not cluster.core.list_namespaced_resource_quota(tenant_name).items,
        timeout=30,
        what="the ResourceQuota to go with its Tenant",
    )
    assert _cli(cluster, "delete", tenant_name).returncode != 0
