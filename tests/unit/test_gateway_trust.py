"""Whom the gateway routes to: only the slices of the operator's Service of the cluster, and only a cluster that
serves the requested model (under its name or its legacy one)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from modelcluster.api import KIND
from modelcluster.api.errors import Conflict
from modelcluster.api.naming import legacy_object_name, object_name
from modelcluster.catalog import Catalog
from modelcluster.gateway.app import create_app
from modelcluster.gateway.clusters import find_cluster
from modelcluster.gateway.endpoints import (
    SERVICE_NAME_LABEL,
    SLICE_MANAGED_BY_LABEL,
    Endpoint,
    EndpointTable,
    ServiceRecord,
    ServiceTable,
    routable,
    service_record,
    slice_service_uid,
)
from modelcluster.gateway.keys import build_key_secret, generate_key
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.kube.objects import Body, ClusterKey

from support import FakeKube
from support.routing import cluster_uid, operator_service, service_uid, slice_metadata

NS = "tenant"
MODEL_ID = "openai-community/gpt2"
OTHER_ID = "openai-community/gpt2-medium"
NAME = object_name(MODEL_ID)
KEY = (NS, NAME)


def forged(name: str = "s", **changes: Any) -> Body:
    """A slice of the cluster's Service as the controller makes it, with ``changes`` to its metadata."""
    metadata = slice_metadata(name, NS, NAME)
    metadata.update(changes)
    return {
        "metadata": metadata,
        "ports": [{"name": "http", "port": 8000}],
        "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "targetRef": {"name": "pod-1"}}],
    }


def with_owner(**changes: Any) -> list[dict[str, Any]]:
    owner = dict(slice_metadata("s", NS, NAME)["ownerReferences"][0])
    owner.update(changes)
    return [owner]


CONTROLLER_LABELS = slice_metadata("s", NS, NAME)["labels"]


# --- which slices are the EndpointSlice controller's, for which Service ----------------------------------------------


def test_a_controller_slice_names_its_service_uid() -> None:
    assert slice_service_uid(forged()) == service_uid(NAME)


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"labels": {SERVICE_NAME_LABEL: NAME}}, id="hand-made: no managed-by label, no owner"),
        pytest.param(
            {"labels": {SERVICE_NAME_LABEL: NAME, SLICE_MANAGED_BY_LABEL: "someone-else"}}, id="another manager"
        ),
        pytest.param({"ownerReferences": []}, id="no owner"),
        pytest.param({"ownerReferences": with_owner(controller=False)}, id="an owner that is not the controller"),
        pytest.param({"ownerReferences": with_owner(kind="Deployment")}, id="owned by a Deployment"),
        pytest.param({"ownerReferences": with_owner(apiVersion="example.com/v1")}, id="a Service of another group"),
        pytest.param({"ownerReferences": with_owner(name="other")}, id="owned by a Service of another name"),
        pytest.param({"ownerReferences": with_owner(uid="")}, id="an owner without uid"),
        pytest.param({"ownerReferences": None}, id="null owners"),
        pytest.param({"labels": {**CONTROLLER_LABELS, SERVICE_NAME_LABEL: ""}}, id="no service name"),
    ],
)
def test_other_slices_name_no_service(metadata: dict[str, Any]) -> None:
    assert slice_service_uid(forged(**metadata)) is None


# --- which Services are the operator's children of the cluster -------------------------------------------------------


def test_the_operators_service_names_its_cluster_uid() -> None:
    assert service_record(operator_service(NS, NAME)) == (KEY, ServiceRecord(service_uid(NAME), cluster_uid(NAME)))


def service_owned(**changes: Any) -> Body:
    service = operator_service(NS, NAME)
    service["metadata"]["ownerReferences"][0].update(changes)
    return service


@pytest.mark.parametrize(
    "service",
    [
        pytest.param(service_owned(controller=False), id="an owner that is not the controller"),
        pytest.param(service_owned(kind="Deployment"), id="controlled by something else"),
        pytest.param(service_owned(apiVersion="example.com/v1alpha1"), id="a ModelCluster of another group"),
        pytest.param(service_owned(name="other-cluster"), id="controlled by a ModelCluster of another name"),
        pytest.param(service_owned(uid=None), id="an owner without uid"),
        pytest.param({"metadata": {"name": NAME, "namespace": NS, "uid": "u"}}, id="hand-made: no owner"),
    ],
)
def test_other_services_belong_to_no_cluster(service: Body) -> None:
    found = service_record(service)
    assert found is not None and found[1].cluster_uid is None


def test_a_service_without_identity_is_not_recorded() -> None:
    assert service_record({"metadata": {"name": NAME, "namespace": NS}}) is None
    assert service_record({}) is None


OURS = ServiceRecord(uid="svc", cluster_uid="mc")


@pytest.mark.parametrize(
    ("slice_service", "service", "cluster", "expected"),
    [
        ("svc", OURS, "mc", True),
        (None, OURS, "mc", False),  # a hand-made slice
        ("svc-forged", OURS, "mc", False),  # a slice of another (older, forged) Service of that name
        ("svc", None, "mc", False),  # the Service is not (yet) known
        ("svc", ServiceRecord("svc", None), "mc", False),  # a Service no ModelCluster controls
        ("svc", ServiceRecord("svc", "mc-old"), "mc", False),  # the Service of a deleted cluster of that name
        ("svc", OURS, None, False),  # no cluster of that name
        ("", ServiceRecord("", "mc"), "mc", False),
        ("svc", ServiceRecord("svc", ""), "", False),
    ],
)
def test_routable(
    slice_service: str | None, service: ServiceRecord | None, cluster: str | None, expected: bool
) -> None:
    assert routable(slice_service, service, cluster) is expected


# --- the table re-decides when slices, the Service or the cluster change ---------------------------------------------


@dataclass
class Tables:
    endpoints: EndpointTable
    clusters: dict[ClusterKey, str]
    changes: list[ClusterKey]

    def cluster(self, uid: str | None) -> None:
        if uid is None:
            self.clusters.pop(KEY, None)
        else:
            self.clusters[KEY] = uid
        self.endpoints.refresh(KEY)


def tables() -> Tables:
    clusters: dict[ClusterKey, str] = {}
    changes: list[ClusterKey] = []
    return Tables(EndpointTable(on_change=changes.append, cluster_uid=clusters.get), clusters, changes)


POD = Endpoint("10.0.0.1", 8000, "pod-1")


def test_nothing_routes_until_the_service_and_the_cluster_are_known() -> None:
    t = tables()
    t.endpoints.event("ADDED", forged())
    assert t.endpoints.ready(KEY) == ()
    t.endpoints.services.event("ADDED", operator_service(NS, NAME))
    assert t.endpoints.ready(KEY) == ()
    t.cluster(cluster_uid(NAME))
    assert t.endpoints.ready(KEY) == (POD,)
    assert t.changes == [KEY]


def test_an_unwired_table_routes_nothing() -> None:
    table = EndpointTable()
    table.services.reset([operator_service(NS, NAME)])
    table.event("ADDED", forged())
    assert table.ready(KEY) == ()


def test_hand_made_slices_beside_the_real_one_are_ignored() -> None:
    t = tables()
    t.endpoints.services.reset([operator_service(NS, NAME)])
    t.cluster(cluster_uid(NAME))
    t.endpoints.event("ADDED", forged("real"))
    evil = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]
    t.endpoints.event("ADDED", {**forged("plain", labels={SERVICE_NAME_LABEL: NAME}), "endpoints": evil})
    t.endpoints.event("ADDED", {**forged("wrong-uid", ownerReferences=with_owner(uid="forged")), "endpoints": evil})
    assert t.endpoints.ready(KEY) == (POD,)


def test_a_service_that_is_not_the_clusters_routes_nothing() -> None:
    t = tables()
    t.cluster(cluster_uid(NAME))
    t.endpoints.services.event("ADDED", operator_service(NS, NAME, owner_uid="someone-else"))
    t.endpoints.event("ADDED", forged())
    assert t.endpoints.ready(KEY) == ()
    t.endpoints.services.event("MODIFIED", operator_service(NS, NAME))  # the operator's own, by uid
    assert t.endpoints.ready(KEY) == (POD,)


def test_a_cluster_recreated_under_the_name_does_not_inherit_the_old_service() -> None:
    t = tables()
    t.endpoints.services.reset([operator_service(NS, NAME)])
    t.cluster(cluster_uid(NAME))
    t.endpoints.event("ADDED", forged())
    assert t.endpoints.ready(KEY) == (POD,)
    t.cluster("mc-uid-recreated")
    assert t.endpoints.ready(KEY) == ()
    t.cluster(None)
    assert t.endpoints.ready(KEY) == ()
    assert t.changes == [KEY, KEY]


def test_the_service_going_takes_its_endpoints_but_an_older_ones_deletion_does_not() -> None:
    t = tables()
    t.cluster(cluster_uid(NAME))
    t.endpoints.services.event("ADDED", operator_service(NS, NAME))
    t.endpoints.event("ADDED", forged())
    t.endpoints.services.event("DELETED", operator_service(NS, NAME, uid="an-older-service"))
    assert t.endpoints.ready(KEY) == (POD,)
    t.endpoints.services.event("DELETED", operator_service(NS, NAME))
    assert t.endpoints.ready(KEY) == ()


def test_a_service_table_tells_changes_only() -> None:
    changes: list[ClusterKey] = []
    services = ServiceTable(on_change=changes.append)
    services.reset([operator_service(NS, NAME)])
    services.event("MODIFIED", copy.deepcopy(operator_service(NS, NAME)))
    assert changes == [KEY]
    services.reset([])
    assert changes == [KEY, KEY] and services.get(KEY) is None
    services.event("ADDED", {"metadata": {}})  # no identity: ignored
    assert changes == [KEY, KEY]


# --- the cluster must serve the requested model ----------------------------------------------------------------------


def mc(name: str, model: str) -> Body:
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": name, "namespace": NS, "uid": cluster_uid(name), "resourceVersion": "1"},
        "spec": {"model": model},
        "status": {"status": "stopped", "targetReplicas": 0},
    }


def lookup(*clusters: Body) -> Any:
    table = {(NS, c["metadata"]["name"]): c for c in clusters}
    return table.get


def test_a_cluster_is_found_under_its_name_first() -> None:
    new, old = mc(NAME, MODEL_ID), mc(legacy_object_name(MODEL_ID), MODEL_ID)
    assert find_cluster(NS, MODEL_ID, lookup(new, old)) == (KEY, new)
    assert find_cluster(NS, MODEL_ID, lookup(old)) == ((NS, legacy_object_name(MODEL_ID)), old)
    assert find_cluster(NS, MODEL_ID, lookup()) == (KEY, None)


def test_a_legacy_name_serving_another_model_is_not_the_models() -> None:
    # Two ids under one 8-digit name: the other id's cluster is not this one's; a new cluster gets the new name.
    other = mc(legacy_object_name(MODEL_ID), OTHER_ID)
    assert find_cluster(NS, MODEL_ID, lookup(other)) == (KEY, None)


@pytest.mark.parametrize("served", [OTHER_ID, MODEL_ID.upper(), "", None])
def test_a_cluster_under_the_name_serving_another_model_is_a_conflict(served: str | None) -> None:
    squatter = mc(NAME, "placeholder")
    squatter["spec"]["model"] = served
    with pytest.raises(Conflict) as raised:
        find_cluster(NS, MODEL_ID, lookup(squatter))
    assert raised.value.message == f"the cluster {NAME} serves {served}, not {MODEL_ID}"
    assert raised.value.status == 409


@dataclass
class Served:
    gateway: Gateway
    kube: FakeKube
    api: TestClient[Any, Any]
    headers: dict[str, str]


@pytest.fixture
async def served(default_catalog: Catalog) -> AsyncIterator[Served]:
    kube = FakeKube()
    gateway = Gateway(settings=GatewaySettings(hold_timeout_s=1.0), catalog=default_catalog, kube=kube)
    keys = KeyStore("keys", max_staleness_s=60.0)
    key = generate_key()
    secret = build_key_secret(key, NS, 64, "keys")
    secret["metadata"]["resourceVersion"] = "1"
    keys.reset([secret])
    keys.confirm()
    keys._ready = True
    api = TestClient(TestServer(create_app(gateway, keys)))
    await api.start_server()
    try:
        yield Served(gateway, kube, api, {"Authorization": f"Key {key}"})
    finally:
        await api.close()


async def test_a_cluster_serving_another_model_answers_409_and_is_neither_routed_to_nor_woken(served: Served) -> None:
    served.gateway.clusters.reset([mc(NAME, OTHER_ID)])  # stopped: a request for it would wake it
    served.gateway.endpoints.services.reset([operator_service(NS, NAME)])
    served.gateway.endpoints.reset([forged()])
    message = f"the cluster {NAME} serves {OTHER_ID}, not {MODEL_ID}"
    run = await served.api.post(f"/models/v2/{MODEL_ID}", json={"text": "hi"}, headers=served.headers)
    assert run.status == 409
    assert await run.json() == {"error": message, "output": None}
    chat = await served.api.post(
        "/models/v2/openai/v1/completions", json={"model": MODEL_ID, "prompt": "hi"}, headers=served.headers
    )
    assert chat.status == 409 and (await chat.json())["error"]["message"] == message
    for method in ("GET", "PATCH", "DELETE", "PUT"):
        answer = await served.api.request(
            method, f"/models/v2/{MODEL_ID}", json={"timeout": 60}, headers=served.headers
        )
        assert answer.status == 409, method
    assert served.kube.writes == [] and served.kube.patches == []
    assert served.gateway.router.balancer.total() == 0


async def test_a_legacy_named_cluster_is_served_and_not_created_again(served: Served) -> None:
    legacy = legacy_object_name(MODEL_ID)
    served.gateway.clusters.reset([mc(legacy, MODEL_ID)])
    served.kube.objects[(KIND, NS, legacy)] = mc(legacy, MODEL_ID)  # as the apiserver has it
    got = await served.api.get(f"/models/v2/{MODEL_ID}", headers=served.headers)
    assert got.status == 200 and (await got.json())["cluster"]["modelId"] == MODEL_ID
    again = await served.api.put(f"/models/v2/{MODEL_ID}", json={}, headers=served.headers)
    assert again.status == 409
    assert await again.json() == {"error": f"cluster for {MODEL_ID} already exists", "output": None}
    patched = await served.api.patch(f"/models/v2/{MODEL_ID}", json={"timeout": 60}, headers=served.headers)
    assert patched.status == 200
    assert served.kube.patches == [(NS, legacy, {"spec": {"timeout": 60}})]
    assert "request" not in served.kube.writes  # nothing created under the new name
