"""Taking objects over by name: a ModelCluster named after someone else's Service or cache claim.

The operator applies its children with a forced server-side apply; were it to apply over an object of
the same name it did not create, it would rewrite it (a Service's selector: traffic hijacked) and add
the ModelCluster as its controller (deleting the ModelCluster would then garbage-collect it). Anyone
allowed to create ModelClusters in a namespace could so take over or delete objects there. Instead the
cluster fails with ``NameConflict`` and the object is left exactly as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from modelcluster.api.naming import object_name

from support import Cluster, OperatorProcess, eventually, or_none

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "modelcluster.dev", "v1alpha1", "modelclusters"
OPERATOR_MANAGER = "modelcluster-operator"
#: The operator looks again at a blocked cluster every 15 s (a foreign object is not watched).
RECHECK_TIMEOUT = 60
VICTIM_LABELS = {"app": "victim", "team": "payments"}
#: Labelled like the operator's children, so the operator's store sees it: still not the cluster's.
IMPOSTOR_LABELS = {"app.kubernetes.io/managed-by": OPERATOR_MANAGER, "app.kubernetes.io/instance": ""}

Body = dict[str, Any]


def objects(cluster: Cluster) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(cluster.api_client)


def create_cluster(cluster: Cluster, namespace: str, model: str, **spec: Any) -> Body:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelCluster",
        "metadata": {"name": object_name(model)},
        "spec": {"model": model, "task": "text-classification", "capacity": {"desired": 0, "max": 1}, **spec},
    }
    created: Body = objects(cluster).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return created


def status_of(cluster: Cluster, namespace: str, name: str) -> Body:
    found: Body = objects(cluster).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return found.get("status") or {}


def raw(read: Callable[..., Any], name: str, namespace: str) -> Body | None:
    """An object exactly as the apiserver serves it (plain JSON, not the client's models); None when absent."""
    try:
        response = read(name, namespace, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    found: Body = json.loads(response.data)
    return found


def fingerprint(obj: Body) -> Body:
    """What a takeover would change: the whole spec and metadata but for what the apiserver itself moves."""
    metadata = obj["metadata"]
    return {
        "resourceVersion": metadata["resourceVersion"],
        "labels": metadata.get("labels"),
        "annotations": metadata.get("annotations"),
        "ownerReferences": metadata.get("ownerReferences"),
        "managers": sorted(m["manager"] for m in metadata.get("managedFields") or []),
        "spec": obj["spec"],
    }


def victim_service(cluster: Cluster, namespace: str, name: str, labels: dict[str, str]) -> Body:
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"selector": {"app": "victim"}, "ports": [{"name": "web", "port": 80, "targetPort": 8080}]},
    }
    cluster.core.create_namespaced_service(namespace, body)
    found = raw(cluster.core.read_namespaced_service, name, namespace)
    assert found is not None
    return found


def victim_claim(cluster: Cluster, namespace: str, name: str) -> Body:
    body = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": VICTIM_LABELS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}},
    }
    cluster.core.create_namespaced_persistent_volume_claim(namespace, body)
    found = raw(cluster.core.read_namespaced_persistent_volume_claim, name, namespace)
    assert found is not None
    return found


def wait_for_conflict(cluster: Cluster, namespace: str, name: str, kind: str, child: str) -> Body:
    status = eventually(
        lambda: (s := status_of(cluster, namespace, name)).get("reason") == "NameConflict" and s,
        timeout=30,
        what="status reason NameConflict",
    )
    assert status["status"] == "failed"
    assert status["message"] == f"{kind} {namespace}/{child} exists and is not managed by this ModelCluster"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    assert status.get("endpoint") is None
    events = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    assert any(e.reason == "NameConflict" and e.type == "Warning" and child in e.message for e in events)
    return status


def delete_and_wait_for_collection(cluster: Cluster, namespace: str, owner: Body) -> None:
    """Delete the ModelCluster and wait until the garbage collector has dealt with its dependents.

    A ConfigMap owned by the ModelCluster is the canary: once it is collected, so is anything the
    ModelCluster controls.
    """
    metadata = owner["metadata"]
    canary = f"{metadata['name']}-canary"
    reference = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelCluster", "name": metadata["name"],
                 "uid": metadata["uid"]}  # fmt: skip
    cluster.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": canary, "ownerReferences": [reference]}, "data": {}}
    )
    objects(cluster).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, metadata["name"])
    eventually(
        lambda: or_none(lambda: cluster.core.read_namespaced_config_map(canary, namespace)) is None,
        timeout=60,
        what="the garbage collector to collect the ModelCluster's dependents",
    )


def owned_by(obj: Body | None, owner: Body) -> bool:
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return False
    references = obj["metadata"].get("ownerReferences") or []
    return any(r.get("controller") and r.get("uid") == owner["metadata"]["uid"] for r in references)


@pytest.mark.parametrize("labels", ["foreign", "impostor"])
def test_a_foreign_service_is_never_taken_over(
    cluster: Cluster, namespace: str, operator: OperatorProcess, labels: str
) -> None:
    model = f"victims/service-{labels}"
    name = object_name(model)
    service_labels = VICTIM_LABELS if labels == "foreign" else {**IMPOSTOR_LABELS, "app.kubernetes.io/instance": name}
    before = victim_service(cluster, namespace, name, service_labels)

    owner = create_cluster(cluster, namespace, model)
    wait_for_conflict(cluster, namespace, name, "Service", name)
    after = raw(cluster.core.read_namespaced_service, name, namespace)
    assert after is not None
    assert fingerprint(after) == fingerprint(before)
    assert after["spec"]["selector"] == {"app": "victim"}
    assert OPERATOR_MANAGER not in fingerprint(after)["managers"]
    # Nothing else was applied for the cluster either.
    assert raw(cluster.apps.read_namespaced_deployment, name, namespace) is None

    delete_and_wait_for_collection(cluster, namespace, owner)
    survivor = raw(cluster.core.read_namespaced_service, name, namespace)
    assert survivor is not None, "the victim was garbage-collected with the ModelCluster"
    assert fingerprint(survivor) == fingerprint(before)


def test_a_foreign_cache_claim_is_never_taken_over(cluster: Cluster, namespace: str, operator: OperatorProcess) -> None:
    model = "victims/cached-model"
    name = object_name(model)
    claim = f"{name}-model-cache"
    before = victim_claim(cluster, namespace, claim)

    owner = create_cluster(cluster, namespace, model, cache={"size": "1Gi"})
    wait_for_conflict(cluster, namespace, name, "PersistentVolumeClaim", claim)
    after = raw(cluster.core.read_namespaced_persistent_volume_claim, claim, namespace)
    assert after is not None
    assert fingerprint(after) == fingerprint(before)
    # No Deployment whose pods would mount someone else's volume, no Service.
    assert raw(cluster.apps.read_namespaced_deployment, name, namespace) is None
    assert raw(cluster.core.read_namespaced_service, name, namespace) is None

    delete_and_wait_for_collection(cluster, namespace, owner)
    survivor = raw(cluster.core.read_namespaced_persistent_volume_claim, claim, namespace)
    assert survivor is not None, "the victim was garbage-collected with the ModelCluster"
    assert fingerprint(survivor) == fingerprint(before)


@pytest.mark.parametrize("kind", ["Service", "ImpostorService", "PersistentVolumeClaim"])
def test_the_cluster_converges_once_the_foreign_object_is_gone(
    cluster: Cluster, namespace: str, operator: OperatorProcess, kind: str
) -> None:
    model = f"victims/converging-{kind.lower()}"
    name = object_name(model)
    if kind == "PersistentVolumeClaim":
        child = f"{name}-model-cache"
        victim_claim(cluster, namespace, child)
        owner = create_cluster(cluster, namespace, model, cache={"size": "1Gi"})
        read = cluster.core.read_namespaced_persistent_volume_claim
        delete: Callable[..., Any] = cluster.core.delete_namespaced_persistent_volume_claim
    else:
        child = name
        labels = VICTIM_LABELS if kind == "Service" else {**IMPOSTOR_LABELS, "app.kubernetes.io/instance": name}
        victim_service(cluster, namespace, name, labels)
        owner = create_cluster(cluster, namespace, model)
        read, delete = cluster.core.read_namespaced_service, cluster.core.delete_namespaced_service
    wait_for_conflict(cluster, namespace, name, "Service" if kind != "PersistentVolumeClaim" else kind, child)

    delete(child, namespace)
    eventually(lambda: owned_by(raw(read, child, namespace), owner), timeout=RECHECK_TIMEOUT, what=f"the {kind}")
    eventually(
        lambda: owned_by(raw(cluster.apps.read_namespaced_deployment, name, namespace), owner),
        timeout=30,
        what="the Deployment",
    )
    status = eventually(
        lambda: (s := status_of(cluster, namespace, name)).get("status") == "stopped" and s,
        timeout=30,
        what="status stopped",
    )
    assert status["reason"] != "NameConflict"
    assert status["endpoint"] == f"http://{name}.{namespace}.svc:8000"
    assert status["observedGeneration"] == owner["metadata"]["generation"]
