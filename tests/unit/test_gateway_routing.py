"""The gateway's routing without a cluster: endpoints, the balancer, cluster bodies, holding and waking, OpenAPI."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from aiohttp import web
from kubernetes_asyncio import client as async_client

from modelcluster.api import InputError, ModelClusterSpec
from modelcluster.api.errors import NotFound, RateLimited, Unavailable
from modelcluster.api.labels import MODEL
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.naming import model_label_value, object_name
from modelcluster.catalog import Catalog
from modelcluster.gateway.app import create_app
from modelcluster.gateway.balancer import Balancer
from modelcluster.gateway.clusters import (
    CREATED_BY_LABEL,
    GATEWAY,
    ClusterBody,
    build_cluster,
    build_patch,
    cluster_view,
    parse_cluster_body,
    wake_patch,
)
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.endpoints import (
    Endpoint,
    EndpointTable,
    endpoints_of_slice,
    slice_owner,
)
from modelcluster.gateway.keystore import KeyStore
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.openapi import openapi_document
from modelcluster.gateway.router import Router, needs_wake
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.state import Gateway
from modelcluster.kube.client import Kube, KubeError
from modelcluster.kube.index import ClusterTable
from modelcluster.operator.builders.plan import plan
from modelcluster.operator.builders.replicas import desired_replicas, wake_remaining, woken_at
from modelcluster.operator.builders.workload import PodOptions

from support import FakeKube, eventually_async
from support.routing import cluster_uid, operator_service, slice_metadata, trusting

NS = "tenant"
NAME = "gpt2-1234abcd"
KEY = (NS, NAME)
MODEL_ID = "openai-community/gpt2"
NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


# --- EndpointSlices -----------------------------------------------------------------------


def endpoint(address: str | Sequence[str], pod: str, **conditions: bool | None) -> dict[str, Any]:
    addresses = [address] if isinstance(address, str) else list(address)
    return {"addresses": addresses, "conditions": conditions, "targetRef": {"kind": "Pod", "name": pod}}


def endpoint_slice(
    name: str,
    *endpoints: dict[str, Any],
    service: str = NAME,
    namespace: str = NS,
    ports: Sequence[dict[str, Any]] = ({"name": "http", "port": 8000, "protocol": "TCP"},),
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": slice_metadata(name, namespace, service),
        "addressType": "IPv4",
        "ports": list(ports),
        "endpoints": list(endpoints),
    }


def urls(endpoints: Sequence[Endpoint]) -> list[str]:
    return [e.url for e in endpoints]


def test_ready_and_unknown_endpoints_are_routed_to() -> None:
    found = endpoints_of_slice(
        endpoint_slice(
            "s",
            endpoint("10.0.0.1", "a", ready=True, serving=True, terminating=False),
            endpoint("10.0.0.2", "b"),  # no conditions: ready unless told otherwise
            endpoint("10.0.0.3", "c", ready=None),
        )
    )
    assert found == (
        Endpoint("10.0.0.1", 8000, "a"),
        Endpoint("10.0.0.2", 8000, "b"),
        Endpoint("10.0.0.3", 8000, "c"),
    )


@pytest.mark.parametrize(
    "conditions",
    [
        {"ready": False},
        {"ready": False, "serving": True},
        {"ready": False, "serving": True, "terminating": True},  # a leaving pod still serving its last requests
        {"ready": True, "terminating": True},
        {"terminating": True},
    ],
)
def test_unready_and_terminating_endpoints_get_no_requests(conditions: dict[str, bool]) -> None:
    assert endpoints_of_slice(endpoint_slice("s", endpoint("10.0.0.1", "a", **conditions))) == ()


@pytest.mark.parametrize("ports", [(), ({"name": "http"},), ({"name": "http", "port": None},), ("8000",)])
def test_a_slice_without_a_port_has_no_endpoints(ports: Sequence[Any]) -> None:
    assert endpoints_of_slice(endpoint_slice("s", endpoint("10.0.0.1", "a"), ports=ports)) == ()


def test_the_http_port_is_preferred_else_the_first() -> None:
    both = ({"name": "metrics", "port": 9090}, {"name": "http", "port": 8000})
    assert urls(endpoints_of_slice(endpoint_slice("s", endpoint("10.0.0.1", "a"), ports=both))) == [
        "http://10.0.0.1:8000"
    ]
    unnamed = ({"port": 8001}, {"name": "other", "port": 8002})
    assert urls(endpoints_of_slice(endpoint_slice("s", endpoint("10.0.0.1", "a"), ports=unnamed))) == [
        "http://10.0.0.1:8001"
    ]


def test_every_address_of_an_endpoint_is_one_target_and_ipv6_is_bracketed() -> None:
    found = endpoints_of_slice(endpoint_slice("s", endpoint(["fd00::1", "10.0.0.7"], "a")))
    assert urls(found) == ["http://[fd00::1]:8000", "http://10.0.0.7:8000"]
    assert {e.pod for e in found} == {"a"}
    assert Endpoint("::1", 80, "p").url == "http://[::1]:80"


def test_an_endpoint_without_a_pod_reference_still_counts() -> None:
    bare = {"addresses": ["10.0.0.1"], "conditions": {"ready": True}}
    assert endpoints_of_slice(endpoint_slice("s", bare)) == (Endpoint("10.0.0.1", 8000, ""),)


def test_slice_owner_names_the_cluster_and_the_slice() -> None:
    assert slice_owner(endpoint_slice("gpt2-1234abcd-x7k2p")) == (KEY, "gpt2-1234abcd-x7k2p")
    no_service = endpoint_slice("s")
    no_service["metadata"]["labels"] = {}
    assert slice_owner(no_service) is None
    no_namespace = endpoint_slice("s")
    del no_namespace["metadata"]["namespace"]
    assert slice_owner(no_namespace) is None
    assert slice_owner({}) is None


# --- the endpoint table -------------------------------------------------------------------


def test_a_cluster_gathers_the_ready_endpoints_of_all_its_slices() -> None:
    table = trusting(EndpointTable(), KEY, (NS, "other"))
    first = endpoint_slice("s1", endpoint("10.0.0.9", "b"), endpoint("10.0.0.10", "c", ready=False))
    second = endpoint_slice("s2", endpoint("10.0.0.2", "a"), endpoint("10.0.0.9", "b"))
    table.event("ADDED", first)
    table.event("ADDED", second)
    table.event("ADDED", endpoint_slice("t1", endpoint("10.0.1.1", "z"), service="other"))
    assert urls(table.ready(KEY)) == ["http://10.0.0.2:8000", "http://10.0.0.9:8000"]  # sorted, no duplicates
    assert urls(table.ready((NS, "other"))) == ["http://10.0.1.1:8000"]

    table.event("MODIFIED", endpoint_slice("s1", endpoint("10.0.0.10", "c")))  # b moved out of s1, c turned ready
    assert urls(table.ready(KEY)) == ["http://10.0.0.10:8000", "http://10.0.0.2:8000", "http://10.0.0.9:8000"]

    table.event("DELETED", second)
    assert urls(table.ready(KEY)) == ["http://10.0.0.10:8000"]
    table.event("DELETED", first)
    assert table.ready(KEY) == ()
    assert urls(table.ready((NS, "other"))) == ["http://10.0.1.1:8000"]


def test_a_reset_replaces_every_cluster() -> None:
    changes: list[tuple[str, str]] = []
    table = trusting(EndpointTable(on_change=changes.append), KEY, (NS, "other"), (NS, "third"))
    table.event("ADDED", endpoint_slice("s1", endpoint("10.0.0.1", "a")))
    table.event("ADDED", endpoint_slice("t1", endpoint("10.0.1.1", "z"), service="other"))
    assert changes == [KEY, (NS, "other")]
    changes.clear()
    third = endpoint_slice("u1", endpoint("10.0.2.1", "y"), service="third")
    table.reset([endpoint_slice("s1", endpoint("10.0.0.1", "a")), third])
    assert urls(table.ready(KEY)) == ["http://10.0.0.1:8000"]
    assert table.ready((NS, "other")) == ()
    assert urls(table.ready((NS, "third"))) == ["http://10.0.2.1:8000"]
    # The cluster that lost its pods and the one that gained some hear of it; KEY, unchanged, does not.
    assert sorted(changes) == [(NS, "other"), (NS, "third")]


def test_on_change_hears_of_changes_only() -> None:
    changes: list[tuple[str, str]] = []
    table = trusting(EndpointTable(on_change=changes.append), KEY, (NS, "other"))
    ready = endpoint_slice("s1", endpoint("10.0.0.1", "a"))
    table.event("ADDED", endpoint_slice("s1", endpoint("10.0.0.1", "a", ready=False)))
    assert changes == []  # still no ready endpoint: nothing to look at
    table.event("MODIFIED", ready)
    assert changes == [KEY]

    table.event("MODIFIED", {**ready, "metadata": {**ready["metadata"], "resourceVersion": "9"}})
    assert changes == [KEY]  # the same endpoints again
    table.event("ADDED", endpoint_slice("s2", endpoint("10.0.0.1", "a")))
    assert changes == [KEY]  # the same pod in a second slice: the same set
    table.event("ADDED", endpoint_slice("t1", endpoint("10.0.1.1", "z"), service="other"))
    assert changes == [KEY, (NS, "other")]
    table.event("DELETED", {"metadata": {"name": "s1", "namespace": NS}})  # no owner: ignored
    table.event("DELETED", ready)
    assert changes == [KEY, (NS, "other")]  # s2 still holds the pod
    table.event("DELETED", endpoint_slice("s2"))
    assert changes == [KEY, (NS, "other"), KEY]
    assert table.ready(KEY) == ()


def test_notify_tells_on_change_and_needs_no_listener() -> None:
    changes: list[tuple[str, str]] = []
    table = EndpointTable(on_change=changes.append)
    table.notify(KEY)
    assert changes == [KEY]
    quiet = trusting(EndpointTable(), KEY)
    quiet.notify(KEY)
    quiet.event("ADDED", endpoint_slice("s1", endpoint("10.0.0.1", "a")))
    assert urls(quiet.ready(KEY)) == ["http://10.0.0.1:8000"]


# --- the balancer -------------------------------------------------------------------------


def pods(count: int) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{n}", 8000, f"pod-{n}") for n in range(1, count + 1)]


def test_a_burst_of_64_over_8_idle_pods_gives_each_8() -> None:
    balancer = Balancer(per_pod_limit=32, rng=random.Random(1))
    candidates = pods(8)
    for _ in range(64):
        assert balancer.pick(candidates) is not None
        counts = [balancer.inflight(p) for p in candidates]
        assert max(counts) - min(counts) <= 1  # never more than one apart while the burst arrives
    counts = [balancer.inflight(p) for p in candidates]
    assert all(7 <= count <= 9 for count in counts)  # the anchors' 8 +/- 1 ...
    assert counts == [8] * 8  # ... and least-outstanding in fact gives exactly 8
    assert balancer.total() == 64


def test_the_least_busy_pod_is_picked() -> None:
    balancer = Balancer(per_pod_limit=10, rng=random.Random(1))
    a, b, c = pods(3)
    for _ in range(3):
        balancer.pick([a])
    balancer.pick([b])
    assert balancer.pick([a, b, c]) == c
    assert balancer.pick([a, b, c]) in (b, c)  # a tie of the two least busy
    assert balancer.inflight(a) == 3
    assert sorted([balancer.inflight(b), balancer.inflight(c)]) == [1, 2]


def test_full_pods_are_not_picked() -> None:
    balancer = Balancer(per_pod_limit=2, rng=random.Random(1))
    candidates = pods(3)
    picked = [balancer.pick(candidates) for _ in range(6)]
    assert None not in picked
    assert balancer.pick(candidates) is None
    assert [balancer.inflight(p) for p in candidates] == [2, 2, 2]
    balancer.release(candidates[1])
    assert balancer.pick(candidates) == candidates[1]
    assert balancer.pick(candidates) is None
    assert Balancer(per_pod_limit=1).pick([]) is None


def test_excluded_pods_are_skipped() -> None:
    balancer = Balancer(per_pod_limit=5, rng=random.Random(1))
    a, b = pods(2)
    balancer.pick([a])
    assert balancer.pick([a, b], exclude=frozenset({b.url})) == a  # busier, but the only one allowed
    assert balancer.pick([a, b], exclude=frozenset({a.url, b.url})) is None
    assert (balancer.inflight(a), balancer.inflight(b)) == (2, 0)


def test_release_never_goes_negative_and_forgets_idle_pods() -> None:
    balancer = Balancer(per_pod_limit=5)
    a, b = pods(2)
    balancer.release(a)
    assert balancer.inflight(a) == 0
    balancer.pick([a])
    balancer.pick([b])
    balancer.release(a)
    balancer.release(a)
    assert (balancer.inflight(a), balancer.inflight(b), balancer.total()) == (0, 1, 1)
    balancer.release(b)
    assert balancer.total() == 0
    assert balancer._inflight == {}  # no entry left behind for pods that come and go
    assert balancer.pick([a]) == a
    assert balancer.inflight(a) == 1  # counted from zero, not from below


class RecordingRandom(random.Random):
    """A seeded generator that records the ties it was asked to break."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.ties: list[list[str]] = []

    def choice(self, seq: Sequence[Any]) -> Any:
        self.ties.append([e.url for e in seq])
        return super().choice(seq)


def test_ties_are_broken_by_the_injected_generator() -> None:
    candidates = pods(8)

    def picks(seed: int) -> tuple[list[str], RecordingRandom]:
        rng = RecordingRandom(seed)
        balancer = Balancer(per_pod_limit=32, rng=rng)
        chosen = [balancer.pick(candidates) for _ in range(16)]
        return [e.url for e in chosen if e is not None], rng

    first, rng = picks(7)
    again, _ = picks(7)
    other, _ = picks(8)
    assert first == again  # the same seed, the same spread
    assert first != other  # ... and another seed another one
    assert rng.ties[0] == urls(candidates)  # every idle pod was a candidate of the first pick
    assert rng.ties[1] == [u for u in urls(candidates) if u != first[0]]
    expected = random.Random(7).choice(candidates)
    assert first[0] == expected.url
    assert sorted(first[:8]) == sorted(urls(candidates))  # the first round covers every pod once


def test_a_single_least_busy_pod_needs_no_tie_break() -> None:
    rng = RecordingRandom(1)
    balancer = Balancer(per_pod_limit=4, rng=rng)
    a, b = pods(2)
    balancer.pick([a])
    assert balancer.pick([a, b]) == b
    assert rng.ties == []


# --- cluster bodies -----------------------------------------------------------------------


def test_an_empty_body_is_allowed_only_where_defaults_apply() -> None:
    assert parse_cluster_body(b"", allow_empty=True) == ClusterBody()
    assert parse_cluster_body(b" \n", allow_empty=True) == ClusterBody()
    with pytest.raises(InputError, match="the body is empty"):
        parse_cluster_body(b"  ", allow_empty=False)
    assert parse_cluster_body(b"{}", allow_empty=False) == ClusterBody()


def test_a_cluster_body_is_parsed() -> None:
    body = parse_cluster_body(
        b'{"capacity": {"min": 1, "desired": 2, "max": 4}, "timeout": 60, "task": "text-generation"}',
        allow_empty=False,
    )
    assert body.capacity is not None
    assert (body.capacity.min, body.capacity.desired, body.capacity.max) == (1, 2, 4)
    assert (body.timeout, body.task) == (60, "text-generation")


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        (b'{"replicas": 3}', "replicas"),
        (b'{"capacity": {"desired": 1, "maximum": 3}}', "capacity.maximum"),
        (b'{"capacity": {"min": "many"}}', "capacity.min"),
        (b'{"capacity": {"desired": -1}}', "capacity.desired"),
        (b'{"capacity": {"max": 1001}}', "capacity.max"),
        (b'{"capacity": 3}', "capacity"),
        (b'{"timeout": 0}', "timeout"),
        (b'{"timeout": "soon"}', "timeout"),
        (b'{"task": "Text Generation"}', "task"),
        (b"[]", "body"),
        (b"{not json", "body"),
    ],
)
def test_bad_cluster_bodies_name_the_field(raw: bytes, named: str) -> None:
    with pytest.raises(InputError, match=r"^invalid body: ") as error:
        parse_cluster_body(raw, allow_empty=True)
    assert error.value.message.startswith(f"invalid body: {named}: ")


def test_a_new_cluster_is_named_and_labelled_for_its_model() -> None:
    body = ClusterBody.model_validate({"capacity": {"desired": 2, "max": 3}, "timeout": 120})
    created = build_cluster(NS, MODEL_ID, body)
    assert created["apiVersion"] == "modelcluster.dev/v1alpha1" and created["kind"] == "ModelCluster"
    assert created["metadata"] == {
        "name": object_name(MODEL_ID),
        "namespace": NS,
        "labels": {MODEL: model_label_value(MODEL_ID), CREATED_BY_LABEL: GATEWAY},
    }
    assert created["spec"] == {"model": MODEL_ID, "capacity": {"desired": 2, "max": 3}, "timeout": 120}
    ModelClusterSpec.model_validate(created["spec"])
    assert build_cluster(NS, MODEL_ID, ClusterBody())["spec"] == {"model": MODEL_ID}


@pytest.mark.parametrize(
    ("model_id", "body", "named"),
    [
        (MODEL_ID, {"capacity": {"min": 3, "desired": 2}}, "capacity"),
        (MODEL_ID, {"capacity": {"desired": 0}}, "capacity"),  # max defaults to desired: nothing could run
        (MODEL_ID, {"capacity": {"desired": 5, "max": 2}}, "capacity"),
        ("not-a-model-id", {}, "model"),
        ("org/na..me", {}, "model"),
    ],
)
def test_a_spec_the_apiserver_would_refuse_is_an_input_error_naming_the_field(
    model_id: str, body: dict[str, Any], named: str
) -> None:
    with pytest.raises(InputError, match=rf"^invalid body: {named}\b"):
        build_cluster(NS, model_id, ClusterBody.model_validate(body))


def test_a_patch_carries_only_what_was_sent() -> None:
    body = ClusterBody.model_validate({"capacity": {"desired": 3}, "timeout": 30})
    assert build_patch(body) == {"spec": {"capacity": {"desired": 3}, "timeout": 30}}
    assert build_patch(ClusterBody.model_validate({"timeout": 30})) == {"spec": {"timeout": 30}}


def test_a_patch_refuses_a_task_and_an_empty_change() -> None:
    with pytest.raises(InputError, match="task cannot be changed"):
        build_patch(ClusterBody.model_validate({"task": "text-generation", "timeout": 30}))
    with pytest.raises(InputError, match="nothing to change"):
        build_patch(ClusterBody())


def test_the_wake_patch_is_an_annotation_the_operator_reads_back() -> None:
    now = datetime(2025, 1, 2, 3, 4, 5, 678900, tzinfo=UTC)
    patch = wake_patch(now)
    assert patch == {"metadata": {"annotations": {WAKE_ANNOTATION: "2025-01-02T03:04:05.678900Z"}}}
    assert woken_at(patch["metadata"]) == now


def stored_cluster(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {
            "name": NAME,
            "namespace": NS,
            "uid": cluster_uid(NAME),
            "creationTimestamp": "2025-06-01T10:00:00Z",
            "resourceVersion": "1",
        },
        "spec": {"model": MODEL_ID, **spec},
        "status": status or {},
    }


def test_a_new_cluster_shows_defaults() -> None:
    view = cluster_view(stored_cluster(capacity={"min": 0, "desired": 2}, timeout=300))
    assert view == {
        "modelId": MODEL_ID,
        "task": None,
        "status": "deploying",
        "reason": None,
        "message": None,
        "capacity": {"min": 0, "desired": 2, "max": 2},  # max defaults to desired
        "timeout": 300,
        "replicas": 0,
        "readyReplicas": 0,
        "lastRequestTime": None,
        "created": "2025-06-01T10:00:00Z",
    }
    assert cluster_view(stored_cluster(capacity={"desired": 1, "max": 4}))["capacity"] == {"desired": 1, "max": 4}


def test_a_cluster_view_shows_the_operators_status() -> None:
    status = {
        "status": "running",
        "reason": "Ready",
        "message": "1 of 1 replicas ready",
        "task": "text-generation",
        "replicas": 1,
        "readyReplicas": 1,
    }
    view = cluster_view(stored_cluster(status, capacity={"desired": 1}))
    assert {k: view[k] for k in ("status", "reason", "message", "task", "replicas", "readyReplicas")} == status


def test_last_request_time_is_the_later_of_status_and_this_gateway() -> None:
    earlier, later = "2025-06-01T11:00:00Z", "2025-06-01T11:30:00Z"
    assert cluster_view(stored_cluster({"lastRequestTime": earlier}), later)["lastRequestTime"] == later
    assert cluster_view(stored_cluster({"lastRequestTime": later}), earlier)["lastRequestTime"] == later
    assert cluster_view(stored_cluster({"lastRequestTime": earlier}))["lastRequestTime"] == earlier
    assert cluster_view(stored_cluster(), later)["lastRequestTime"] == later


def test_the_task_shown_is_the_status_then_the_spec_then_the_gateways() -> None:
    assert cluster_view(stored_cluster({"task": "a"}, task="b"), task="c")["task"] == "a"
    assert cluster_view(stored_cluster(task="b"), task="c")["task"] == "b"
    assert cluster_view(stored_cluster(), task="c")["task"] == "c"


# --- waking -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "wake"),
    [
        ({"status": "stopped", "targetReplicas": 0}, True),
        ({"status": "stopped"}, True),
        ({"status": "deploying", "targetReplicas": 0}, True),
        ({"status": "running", "targetReplicas": 0}, True),  # the operator scaled it to zero: not yet reported
        ({"status": "running", "targetReplicas": 2}, False),
        ({"status": "deploying", "targetReplicas": 1}, False),
        ({"status": "deploying"}, False),
        ({}, False),
    ],
)
def test_needs_wake(status: dict[str, Any], wake: bool) -> None:
    assert needs_wake(stored_cluster(status)) is wake


def test_a_cluster_without_status_needs_no_wake() -> None:
    assert needs_wake({"spec": {"model": MODEL_ID}}) is False
    assert needs_wake({"spec": {"model": MODEL_ID}, "status": None}) is False


def spec_of(capacity: dict[str, int], timeout: int = 300) -> ModelClusterSpec:
    return ModelClusterSpec.model_validate({"model": MODEL_ID, "capacity": capacity, "timeout": timeout})


def test_a_wake_runs_one_replica_of_a_cluster_at_zero_for_its_timeout() -> None:
    spec = spec_of({"min": 0, "desired": 0, "max": 3}, timeout=300)
    assert desired_replicas(spec, None) == 0
    assert desired_replicas(spec, None, None, NOW) == 0
    assert desired_replicas(spec, None, NOW - timedelta(seconds=10), NOW) == 1
    assert desired_replicas(spec, None, NOW, NOW) == 1
    assert desired_replicas(spec, None, NOW - timedelta(seconds=299), NOW) == 1
    assert desired_replicas(spec, None, NOW - timedelta(seconds=300), NOW) == 0  # the window is over
    assert desired_replicas(spec, None, NOW - timedelta(days=1), NOW) == 0
    assert desired_replicas(spec, None, NOW - timedelta(seconds=10)) == 0  # no clock: no wake


@pytest.mark.parametrize(
    ("capacity", "replicas"),
    [({"min": 0, "desired": 2}, 2), ({"min": 1, "desired": 1}, 1), ({"min": 2, "desired": 4, "max": 6}, 4)],
)
def test_a_wake_leaves_a_running_capacity_alone(capacity: dict[str, int], replicas: int) -> None:
    spec = spec_of(capacity)
    assert desired_replicas(spec, None) == replicas
    assert desired_replicas(spec, None, NOW - timedelta(seconds=1), NOW) == replicas
    assert desired_replicas(spec, None, NOW - timedelta(days=1), NOW) == replicas


def test_wake_remaining_counts_down_the_timeout() -> None:
    spec = spec_of({"desired": 1}, timeout=60)
    assert wake_remaining(spec, None, NOW) is None
    assert wake_remaining(spec, NOW, NOW) == 60.0
    assert wake_remaining(spec, NOW - timedelta(seconds=15.5), NOW) == 44.5
    assert wake_remaining(spec, NOW - timedelta(seconds=60), NOW) is None
    assert wake_remaining(spec, NOW - timedelta(seconds=61), NOW) is None


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({WAKE_ANNOTATION: "2025-06-01T11:59:50.250000Z"}, datetime(2025, 6, 1, 11, 59, 50, 250000, tzinfo=UTC)),
        ({WAKE_ANNOTATION: "2025-06-01T11:59:50Z"}, datetime(2025, 6, 1, 11, 59, 50, tzinfo=UTC)),
        ({WAKE_ANNOTATION: "yesterday"}, None),
        ({WAKE_ANNOTATION: ""}, None),
        ({"modelcluster.dev/wake-requested-at": "2025-06-01T11:59:50Z"}, None),  # kopf's prefix is not read
        ({}, None),
        (None, None),
    ],
)
def test_woken_at_reads_the_annotation(annotations: dict[str, str] | None, expected: datetime | None) -> None:
    assert woken_at({"name": NAME, "annotations": annotations}) == expected
    assert woken_at({}) is None


def test_the_plan_of_a_woken_cluster_holds_it_up_until_the_wake_ends(default_catalog: Catalog) -> None:
    body = stored_cluster(capacity={"min": 0, "desired": 0, "max": 2}, timeout=120)
    body["metadata"].update(uid="u-1", generation=3)
    asleep = plan(body, default_catalog, PodOptions(), NOW)
    assert asleep.problem is None
    assert asleep.replicas == 0

    body["metadata"]["annotations"] = wake_patch(NOW - timedelta(seconds=20))["metadata"]["annotations"]
    assert plan(body, default_catalog, PodOptions(), NOW).replicas == 1
    assert plan(body, default_catalog, PodOptions(), NOW + timedelta(seconds=99)).replicas == 1
    assert plan(body, default_catalog, PodOptions(), NOW + timedelta(seconds=100)).replicas == 0


def test_the_plan_of_a_running_cluster_keeps_its_replicas_when_woken(default_catalog: Catalog) -> None:
    body = stored_cluster(capacity={"min": 0, "desired": 2}, timeout=120)
    body["metadata"]["annotations"] = wake_patch(NOW - timedelta(seconds=30))["metadata"]["annotations"]
    assert plan(body, default_catalog, PodOptions(), NOW).replicas == 2


# --- holding and waking requests ----------------------------------------------------------


@dataclass
class Routing:
    """A router with real tables, wired as the gateway wires them, and requests made the way routes make them."""

    settings: GatewaySettings
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    endpoints: EndpointTable = field(default_factory=EndpointTable)
    clusters: ClusterTable = field(init=False)
    kube: FakeKube = field(init=False)
    demand: Demand = field(init=False)
    router: Router = field(init=False)
    active: int = 0
    peak: int = 0
    granted: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.clusters = ClusterTable()
        self.kube = FakeKube(read=lambda namespace, name: self.clusters.get((namespace, name)))
        self.demand = Demand(self.metrics)
        self.router = Router(self.settings, self.kube, self.clusters, self.endpoints, self.demand, self.metrics)
        # Wired as the gateway wires them: the operator's Service is known, the cluster's uid comes from its table.
        self.endpoints.on_change = self.router.changed
        self.endpoints.cluster_uid = lambda key: (self.clusters.get(key) or {}).get("metadata", {}).get("uid")
        self.endpoints.services.reset([operator_service(NS, NAME)])
        self.clusters.on_change = self.cluster_changed

    def cluster_changed(self, key: tuple[str, str]) -> None:
        self.endpoints.refresh(key)
        self.router.changed(key)

    async def request(self, number: int = 0, gate: asyncio.Event | None = None) -> Endpoint:
        """One inference request: counted as demand, given a pod, kept until ``gate`` opens, then released."""
        self.demand.start(KEY)
        try:
            endpoint = await self.router.acquire(KEY)
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.granted.append(number)
            try:
                if gate is not None:
                    await gate.wait()
            finally:
                self.active -= 1
                self.router.release(KEY, endpoint)
            return endpoint
        finally:
            self.demand.finish(KEY)

    def held(self) -> int:
        return self.demand.of(KEY).held

    def gauge(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"namespace": NS, "model": NAME})

    def assert_idle(self) -> None:
        """Every counter is back at zero: nothing held, outstanding or in flight."""
        demand = self.demand.of(KEY)
        assert (demand.held, demand.outstanding) == (0, 0)
        assert self.router.balancer.total() == 0
        assert self.gauge("modelcluster_gateway_held_requests") in (None, 0.0)
        assert self.gauge("modelcluster_gateway_outstanding_requests") in (None, 0.0)


MakeRouting = Callable[..., Routing]


@pytest.fixture
def make_routing() -> Iterator[MakeRouting]:
    def make(**settings: Any) -> Routing:
        defaults: dict[str, Any] = {"hold_timeout_s": 5.0, "wake_interval_s": 60.0}
        return Routing(GatewaySettings(**{**defaults, **settings}))

    yield make


RUNNING = {"status": "deploying", "reason": "Starting", "targetReplicas": 1}
STOPPED = {"status": "stopped", "reason": "Idle", "targetReplicas": 0}
POD = endpoint_slice("s1", endpoint("10.0.0.1", "pod-1"))


async def test_a_ready_pod_is_given_at_once(make_routing: MakeRouting) -> None:
    routing = make_routing()
    routing.clusters.reset([stored_cluster(RUNNING)])
    routing.endpoints.reset([POD])
    endpoint = await asyncio.wait_for(routing.request(), 1)
    assert endpoint.url == "http://10.0.0.1:8000"
    assert routing.kube.patches == []
    routing.assert_idle()


async def test_a_held_request_is_released_the_moment_an_endpoint_appears(make_routing: MakeRouting) -> None:
    routing = make_routing()
    routing.clusters.reset([stored_cluster(RUNNING)])
    loop = asyncio.get_running_loop()
    granted_at: list[float] = []

    async def request() -> Endpoint:
        endpoint = await routing.request()
        granted_at.append(loop.time())
        return endpoint

    task = asyncio.create_task(request())
    await eventually_async(lambda: routing.held() == 1)
    assert routing.gauge("modelcluster_gateway_held_requests") == 1.0
    assert not task.done()

    routing.endpoints.event("ADDED", POD)
    appeared = loop.time()
    endpoint = await asyncio.wait_for(task, 1)
    assert granted_at[0] - appeared < 0.1
    assert endpoint.url == "http://10.0.0.1:8000"
    assert routing.kube.patches == []  # a deploying cluster is not woken
    routing.assert_idle()


async def test_a_burst_on_a_stopped_cluster_writes_one_wake(make_routing: MakeRouting) -> None:
    routing = make_routing(per_pod_limit=64)
    routing.clusters.reset([stored_cluster(STOPPED)])
    gate = asyncio.Event()
    tasks = [asyncio.create_task(routing.request(n, gate)) for n in range(50)]
    await eventually_async(lambda: routing.held() == 50)
    wakes = routing.metrics.registry.get_sample_value
    await eventually_async(lambda: wakes("modelcluster_gateway_wakes_total", {"namespace": NS, "model": NAME}) == 1.0)
    # The woken object came back through the table, so every held request looked again; none wrote again.
    assert WAKE_ANNOTATION in (routing.clusters.get(KEY) or {})["metadata"]["annotations"]

    routing.clusters.event("MODIFIED", stored_cluster(RUNNING))  # the operator brings a replica up
    routing.endpoints.event("ADDED", POD)
    await eventually_async(lambda: len(routing.granted) == 50)
    gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)

    assert len(routing.kube.patches) == 1
    namespace, name, patch = routing.kube.patches[0]
    assert (namespace, name) == KEY
    assert woken_at(patch["metadata"]) is not None
    routing.assert_idle()


async def test_a_failed_wake_is_written_again_by_the_next_request(make_routing: MakeRouting) -> None:
    routing = make_routing()
    routing.clusters.reset([stored_cluster(STOPPED)])
    failures = [KubeError(0, "ClientConnectorError: the Kubernetes API is unavailable")]
    original = routing.kube.patch_cluster

    async def flaky(namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        if failures:
            routing.kube.patches.append((namespace, name, patch))
            raise failures.pop()
        return await original(namespace, name, patch)

    routing.kube.patch_cluster = flaky  # type: ignore[method-assign]
    first = asyncio.create_task(routing.request(1))
    await eventually_async(lambda: len(routing.kube.patches) == 1)  # written and failed in one step
    second = asyncio.create_task(routing.request(2))
    await eventually_async(lambda: len(routing.kube.patches) == 2)
    routing.endpoints.event("ADDED", POD)
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert len(routing.kube.patches) == 2
    routing.assert_idle()


async def test_past_the_hold_limit_requests_are_refused(make_routing: MakeRouting) -> None:
    routing = make_routing(hold_limit=3)
    routing.clusters.reset([stored_cluster(RUNNING)])
    held = [asyncio.create_task(routing.request(n)) for n in range(3)]
    await eventually_async(lambda: routing.held() == 3)
    with pytest.raises(RateLimited) as refused:
        await routing.request(4)
    assert refused.value.retry_after == 1
    assert refused.value.message == f"too many requests are waiting for {MODEL_ID}; try again shortly"
    assert routing.held() == 3

    routing.endpoints.event("ADDED", POD)
    await asyncio.wait_for(asyncio.gather(*held), 5)
    routing.assert_idle()


async def test_a_request_held_past_its_deadline_is_unavailable(make_routing: MakeRouting) -> None:
    routing = make_routing(hold_timeout_s=0.05)
    routing.clusters.reset([stored_cluster(RUNNING)])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable) as unavailable:
        await asyncio.wait_for(routing.request(), 5)
    assert loop.time() - started >= 0.04
    assert unavailable.value.retry_after == 10
    assert "no ready replica yet" in unavailable.value.message
    assert MODEL_ID in unavailable.value.message
    routing.assert_idle()


async def test_a_deleted_cluster_answers_its_held_requests_not_found(make_routing: MakeRouting) -> None:
    routing = make_routing()
    routing.clusters.reset([stored_cluster(RUNNING)])
    held = [asyncio.create_task(routing.request(n)) for n in range(3)]
    await eventually_async(lambda: routing.held() == 3)
    routing.clusters.event("DELETED", stored_cluster(RUNNING))
    outcomes = await asyncio.wait_for(asyncio.gather(*held, return_exceptions=True), 1)
    assert all(isinstance(outcome, NotFound) for outcome in outcomes)
    assert "deleted" in str(outcomes[0])
    routing.assert_idle()


async def test_a_cluster_that_fails_answers_unavailable_with_its_message(make_routing: MakeRouting) -> None:
    routing = make_routing()
    routing.clusters.reset([stored_cluster(RUNNING)])
    held = asyncio.create_task(routing.request())
    await eventually_async(lambda: routing.held() == 1)
    failed = {"status": "failed", "reason": "Unschedulable", "message": "no node has a free GPU"}
    routing.clusters.event("MODIFIED", stored_cluster(failed))
    with pytest.raises(Unavailable) as unavailable:
        await asyncio.wait_for(held, 1)
    assert unavailable.value.message == f"{MODEL_ID} cannot start: no node has a free GPU"
    assert unavailable.value.retry_after == 30

    routing.clusters.event("MODIFIED", stored_cluster({"status": "failed", "reason": "Unschedulable"}))
    with pytest.raises(Unavailable, match="cannot start: Unschedulable"):
        await asyncio.wait_for(routing.request(), 1)  # the reason when there is no message, at once
    assert routing.kube.patches == []
    routing.assert_idle()


async def test_a_pod_at_its_limit_gets_its_held_requests_one_by_one(make_routing: MakeRouting) -> None:
    """The anchors' "drip, don't flush": a pod that turns ready gets at most its limit, then one per release."""
    routing = make_routing(per_pod_limit=4)
    routing.clusters.reset([stored_cluster(RUNNING)])
    gates = [asyncio.Event() for _ in range(20)]
    tasks = [asyncio.create_task(routing.request(n, gates[n])) for n in range(20)]
    await eventually_async(lambda: routing.held() == 20)

    routing.endpoints.event("ADDED", POD)
    await eventually_async(lambda: len(routing.granted) == 4)
    assert routing.held() == 16
    for released in range(16):
        gates[routing.granted[released]].set()
        await eventually_async(lambda released=released: len(routing.granted) == 5 + released)
        assert routing.active <= 4
        assert routing.held() == 15 - released  # one released slot, one more request: a drip
    for gate in gates:
        gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)

    assert sorted(routing.granted) == list(range(20))
    assert routing.peak == 4
    routing.assert_idle()


async def test_a_request_cancelled_while_held_leaves_no_count_behind(make_routing: MakeRouting) -> None:
    routing = make_routing()
    routing.clusters.reset([stored_cluster(RUNNING)])
    held = asyncio.create_task(routing.request())
    await eventually_async(lambda: routing.held() == 1)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    routing.assert_idle()


# --- the OpenAPI document -----------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()  # the OpenAPI 3.1 meta-schema


def test_a_broken_document_would_be_refused() -> None:
    broken = {**openapi_document(), "paths": {"/x": {"get": {"responses": "none"}}}}
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


def test_every_component_schema_is_valid_json_schema_and_every_reference_resolves() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for name, schema in schemas.items():
        assert jsonschema_rs.meta.is_valid(schema), name

    def references(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    found = set(references(document))
    assert found  # the walk does see references
    for reference in found:
        assert reference.startswith("#/components/schemas/"), reference
        assert reference.removeprefix("#/components/schemas/") in schemas, reference


async def test_every_route_is_documented_with_its_methods(default_catalog: Catalog) -> None:
    async with async_client.ApiClient(async_client.Configuration()) as api_client:
        gateway = Gateway(settings=GatewaySettings(), catalog=default_catalog, kube=Kube(api_client))
        app = create_app(gateway, KeyStore("keys"))
    routed: set[tuple[str, str]] = set()
    for route in app.router.routes():
        assert isinstance(route.resource, web.Resource)
        path = route.resource.canonical
        if route.method == "HEAD":
            assert ("GET", path) in {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
            continue  # aiohttp answers HEAD of a GET route by itself
        routed.add((route.method, path))
    documented = {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete", "head", "options")
    }
    assert routed - documented == set()
    assert documented - routed == set()
    assert ("POST", "/models/v2/{org}/{name}") in routed
