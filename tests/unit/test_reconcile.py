from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from modelcluster.catalog import Catalog
from modelcluster.kube.client import KubeError
from modelcluster.kube.objects import Body
from modelcluster.operator.builders.children import SPEC_HASH_ANNOTATION
from modelcluster.operator.builders.replicas import REPLICAS_FIELD_MANAGER, build_replicas_apply
from modelcluster.operator.builders.workload import PodOptions
from modelcluster.operator.config import FIELD_MANAGER
from modelcluster.operator.controller.queue import WorkQueue
from modelcluster.operator.controller.reconcile import Memory, Reconciler, Seen
from modelcluster.operator.controller.store import Store
from modelcluster.operator.controller.workers import Controller, recheck_delay
from modelcluster.operator.metrics import ReconcileMetrics

from support import FakeKube

NAME = "gpt2-1234abcd"
GPT2 = {"model": "openai-community/gpt2", "capacity": {"desired": 0, "max": 2}}


def cluster(spec: dict[str, Any], name: str = "gpt2-1234abcd", status: Body | None = None, generation: int = 2) -> Body:
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": name, "namespace": "tenant", "uid": "u-1", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


@pytest.fixture
def api() -> FakeKube:
    return FakeKube(status_manager=FIELD_MANAGER, replicas_manager=REPLICAS_FIELD_MANAGER)


@pytest.fixture
def reconciler(api: FakeKube, default_catalog: Catalog) -> Reconciler:
    return Reconciler(api=api, catalog=default_catalog, pods=PodOptions(), unschedulable_deadline=timedelta(minutes=5))


async def _converged(api: FakeKube, reconciler: Reconciler, spec: dict[str, Any]) -> tuple[Body, Memory]:
    """A cluster after its first reconcile, with its stored status, and the memory of that reconcile."""
    memory = Memory()
    body = cluster(spec)
    await reconciler.reconcile(body, Seen(), memory)
    body["status"] = api.statuses[-1]
    return body, memory


def _seen(api: FakeKube) -> Seen:
    return Seen(deployment=api.stored("Deployment", "tenant", NAME), service=api.stored("Service", "tenant", NAME))


async def test_create_applies_service_then_deployment_with_its_replicas(api: FakeKube, reconciler: Reconciler) -> None:
    derived = await reconciler.reconcile(cluster(GPT2), Seen(), Memory())
    # The store knows neither child: each is read once by name (nothing there) before its first apply.
    assert sorted(api.reads) == [("Deployment", "gpt2-1234abcd"), ("Service", "gpt2-1234abcd")]
    kinds = [(kind, manager) for kind, manager, _ in api.applies]
    assert kinds == [("Service", FIELD_MANAGER), ("Deployment", FIELD_MANAGER)]
    # Created at the right count, in the one apply: a cluster created at zero never starts a pod.
    assert api.applies[1][2]["spec"]["replicas"] == 0
    assert api.applies[0][2]["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert api.applies[1][2]["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert derived.status.status == "stopped"
    assert derived.status.observed_generation == 2
    assert api.statuses[-1]["status"] == "stopped"
    assert api.statuses[-1]["endpoint"] == "http://gpt2-1234abcd.tenant.svc:8000"
    assert api.statuses[-1]["selector"].startswith("app.kubernetes.io/name=")


@pytest.mark.parametrize("fresh_memory", [False, True], ids=["same-process", "after-restart"])
async def test_a_converged_cluster_costs_no_request(api: FakeKube, reconciler: Reconciler, fresh_memory: bool) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    statuses = len(api.statuses)
    api.reads.clear()
    await reconciler.reconcile(body, _seen(api), Memory() if fresh_memory else memory)
    assert api.applies == []
    assert api.reads == []  # children the store has as the cluster's own are never read
    assert len(api.statuses) == statuses


async def test_a_child_the_store_has_not_seen_yet_is_not_applied_twice(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    await reconciler.reconcile(body, Seen(), memory)
    assert api.applies == []


async def _handed_over(api: FakeKube, replicas: int) -> None:
    """The autoscaler's first change of the count: its forced apply takes ``spec.replicas`` over."""
    await api.apply(build_replicas_apply(NAME, "tenant", replicas), REPLICAS_FIELD_MANAGER)


async def test_a_changed_spec_applies_the_body_without_replicas(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    await _handed_over(api, 1)
    api.applies.clear()
    body["spec"] = {**GPT2, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3
    derived = await reconciler.reconcile(body, _seen(api), memory)
    assert [(kind, manager) for kind, manager, _ in api.applies] == [("Deployment", FIELD_MANAGER)]
    assert "replicas" not in api.applies[0][2]["spec"]
    assert derived.status.observed_generation == 3


async def test_a_capacity_change_leaves_the_deployment_to_the_autoscaler(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    body["spec"] = {**GPT2, "capacity": {"desired": 1, "max": 3}}
    await reconciler.reconcile(body, _seen(api), memory)
    assert api.applies == []


async def test_drift_by_another_writer_is_applied_back(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    edited = api.stored("Deployment", "tenant", NAME)
    # `kubectl edit` of a field the operator owns: the field moves to the other manager.
    for entry in edited["metadata"]["managedFields"]:
        if entry["manager"] == FIELD_MANAGER:
            entry["fieldsV1"]["f:spec"].pop("f:template")
    edited["metadata"]["managedFields"].append(
        {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {}}}}
    )
    edited["metadata"]["resourceVersion"] = "900"
    api.objects[("Deployment", "tenant", NAME)] = copy.deepcopy(edited)
    await reconciler.reconcile(body, Seen(deployment=edited, service=api.stored("Service", "tenant", NAME)), memory)
    assert [(kind, manager) for kind, manager, _ in api.applies] == [("Deployment", FIELD_MANAGER)]


async def test_a_stale_store_copy_is_no_drift(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    stale = api.stored("Deployment", "tenant", NAME)
    # The copy of before the autoscaler's hand-over: the operator no longer owns spec.replicas, and that is no drift.
    for entry in stale["metadata"]["managedFields"]:
        if entry["manager"] == FIELD_MANAGER:
            entry["fieldsV1"]["f:spec"].pop("f:replicas")
    stale["metadata"]["resourceVersion"] = "1"
    await reconciler.reconcile(body, Seen(deployment=stale, service=api.stored("Service", "tenant", NAME)), memory)
    assert api.applies == []


async def test_a_deleted_child_is_created_again(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    memory.forget(("tenant", "gpt2-1234abcd", "Service"))
    await reconciler.reconcile(body, Seen(deployment=api.stored("Deployment", "tenant", NAME)), memory)
    assert [(kind, manager) for kind, manager, _ in api.applies] == [("Service", FIELD_MANAGER)]


async def test_a_rejected_child_lands_in_status_and_an_event(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    body["spec"] = {**GPT2, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3
    api.fail_with = KubeError(422, 'Deployment.apps "gpt2-1234abcd" is invalid: spec.template: Invalid value')
    derived = await reconciler.reconcile(body, _seen(api), memory)
    assert derived.status.status == "failed"
    assert derived.status.reason == "ChildRejected"
    assert "is invalid" in (derived.status.message or "")
    # The children of generation 3 were never applied: the status does not claim them.
    assert derived.status.observed_generation == 2
    assert all(c.observed_generation == 2 for c in derived.status.conditions)
    assert [(e["reason"], e["type"]) for e in api.events] == [("ChildRejected", "Warning")]


async def test_an_apiserver_outage_raises_for_a_retry(api: FakeKube, reconciler: Reconciler) -> None:
    api.fail_with = KubeError(500, "etcd timeout")
    with pytest.raises(KubeError):
        await reconciler.reconcile(cluster(GPT2), Seen(), Memory())
    assert api.statuses == []


async def test_unknown_model_without_task_creates_nothing(api: FakeKube, reconciler: Reconciler) -> None:
    derived = await reconciler.reconcile(cluster({"model": "someone/unknown"}), Seen(), Memory())
    assert api.applies == []
    assert derived.status.status == "failed"
    assert derived.status.reason == "UnknownModel"
    assert "spec.task" in (derived.status.message or "")
    assert api.statuses[-1]["status"] == "failed"


async def test_unknown_model_with_task_runs(api: FakeKube, reconciler: Reconciler) -> None:
    await reconciler.reconcile(cluster({"model": "someone/unknown", "task": "fill-mask"}), Seen(), Memory())
    assert [kind for kind, _, _ in api.applies] == ["Service", "Deployment"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (cluster({"model": "not-an-id"}), "InvalidSpec"),
        (cluster({"model": "a/b", "capacity": {"min": 5, "desired": 1}}), "InvalidSpec"),
        (cluster({"model": "a/b", "capacity": "lots"}), "InvalidSpec"),
        (cluster({}), "InvalidSpec"),
        (cluster({"model": "openai-community/gpt2"}, name="Not.A.Label"), "InvalidName"),
        (cluster({"model": "openai-community/gpt2", "task": "juggling"}), "UnknownTask"),
    ],
)
async def test_bad_input_never_raises(api: FakeKube, reconciler: Reconciler, body: Body, reason: str) -> None:
    derived = await reconciler.reconcile(body, Seen(), Memory())
    assert derived.status.status == "failed"
    assert derived.status.reason == reason
    assert api.applies == []


async def test_unchanged_status_is_not_written_again(api: FakeKube, reconciler: Reconciler) -> None:
    body = cluster({"model": "someone/unknown"})
    await reconciler.reconcile(body, Seen(), Memory())
    assert len(api.statuses) == 1
    body["status"] = api.statuses[-1]
    await reconciler.reconcile(body, Seen(), Memory())
    assert len(api.statuses) == 1


async def test_foreign_status_fields_are_never_written(api: FakeKube, reconciler: Reconciler) -> None:
    body = cluster({"model": "someone/unknown"}, status={"queueDepth": 5, "lastRequestTime": "2026-01-01T00:00:00Z"})
    await reconciler.reconcile(body, Seen(), Memory())
    assert "queueDepth" not in api.statuses[-1] and "lastRequestTime" not in api.statuses[-1]


UNSCHEDULABLE_POD = {
    "metadata": {"name": "p", "labels": {"app.kubernetes.io/instance": "gpt2-1234abcd"}, "namespace": "tenant"},
    "status": {
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "lastTransitionTime": "2999-01-01T00:00:00Z",
            }
        ]
    },
}


async def test_controller_reads_the_store_counts_metrics_and_rechecks(api: FakeKube, reconciler: Reconciler) -> None:
    metrics = ReconcileMetrics.create()
    store = Store()
    store.synced.set()
    controller = Controller(store=store, reconciler=reconciler, metrics=metrics)
    store.clusters.event("ADDED", cluster({"model": "openai-community/gpt2"}))
    store.pods.event("ADDED", copy.deepcopy(UNSCHEDULABLE_POD))
    assert await controller.sync("tenant", "gpt2-1234abcd") is not None
    sample = metrics.registry.get_sample_value
    labels = {"controller": "modelcluster", "result": "requeue_after"}
    assert sample("controller_runtime_reconcile_total", labels) == 1
    store.clusters.event("MODIFIED", cluster({"model": "openai-community/gpt2"}, generation=3))
    controller.memory = Memory()
    api.fail_with = KubeError(500, "boom")
    with pytest.raises(KubeError):
        await controller.sync("tenant", "gpt2-1234abcd")
    assert sample("controller_runtime_reconcile_errors_total", {"controller": "modelcluster"}) == 1
    assert sample("controller_runtime_reconcile_time_seconds_count", {"controller": "modelcluster"}) == 2


async def test_controller_skips_missing_and_deleting(api: FakeKube, reconciler: Reconciler) -> None:
    store = Store()
    store.synced.set()
    controller = Controller(store=store, reconciler=reconciler, metrics=ReconcileMetrics.create())
    assert await controller.sync("tenant", "absent") is None
    body = cluster({"model": "openai-community/gpt2"})
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    store.clusters.event("ADDED", body)
    assert await controller.sync("tenant", body["metadata"]["name"]) is None
    assert api.applies == []


async def test_a_deleted_child_is_forgotten_and_its_cluster_queued(api: FakeKube, reconciler: Reconciler) -> None:
    store = Store()
    controller = Controller(store=store, reconciler=reconciler, metrics=ReconcileMetrics.create())
    queue = controller.start()
    key = ("tenant", "gpt2-1234abcd", "Service")
    controller.memory.remember(key, {"metadata": {"name": "gpt2-1234abcd"}})
    service = {"metadata": {"name": "gpt2-1234abcd", "namespace": "tenant",
                            "labels": {"app.kubernetes.io/instance": "gpt2-1234abcd"}}}  # fmt: skip
    store.services.event("ADDED", service)
    store.services.event("DELETED", service)
    assert key not in controller.memory.applied
    assert queue.pending() == 1
    await queue.close()


def test_recheck_delay_is_after_the_deadline() -> None:
    from modelcluster.operator.builders.status import Derived

    status = Derived(status=None, recheck_after=4.0)  # type: ignore[arg-type]
    assert recheck_delay(status) == 5.0


async def test_a_rejected_spec_is_not_retried_until_it_changes(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    body["spec"] = {**GPT2, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3
    api.fail_with = KubeError(422, "invalid")
    await reconciler.reconcile(body, _seen(api), memory)
    api.applies.clear()
    again = await reconciler.reconcile(body, _seen(api), memory)
    assert again.status.reason == "ChildRejected"
    assert api.applies == [] and len(api.events) == 1
    api.fail_with = None
    body["spec"] = GPT2
    body["metadata"]["generation"] = 4
    fixed = await reconciler.reconcile(body, _seen(api), memory)
    assert fixed.status.observed_generation == 4 and fixed.status.reason != "ChildRejected"


async def test_a_cluster_made_again_under_a_rejected_name_is_applied(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    body["spec"] = {**GPT2, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3
    api.fail_with = KubeError(422, "invalid")
    assert (await reconciler.reconcile(body, _seen(api), memory)).status.reason == "ChildRejected"
    api.fail_with = None
    api.applies.clear()
    # Deleted and made again under the same name (a new uid, the same generation), its deletion not yet seen.
    again = {**body, "metadata": {**body["metadata"], "uid": "a-new-uid"}}
    derived = await reconciler.reconcile(again, _seen(api), memory)
    # Not the old cluster's rejection: the old cluster's children, until collected, stand as name conflicts.
    assert derived.status.reason == "NameConflict", derived.status


@pytest.mark.parametrize(
    "error",
    [
        KubeError(404, 'modelclusters.modelcluster.dev "gpt2-1234abcd" not found'),
        KubeError(
            403, 'services "x" is forbidden: unable to create new content in namespace t because it is being terminated'
        ),
    ],
)
async def test_a_cluster_deleted_while_reconciling_is_not_retried(
    api: FakeKube, reconciler: Reconciler, error: KubeError
) -> None:
    store = Store()
    store.synced.set()
    controller = Controller(store=store, reconciler=reconciler, metrics=ReconcileMetrics.create())
    store.clusters.event("ADDED", cluster(GPT2))
    api.fail_with = error
    assert await controller.sync("tenant", "gpt2-1234abcd") is None
    api.fail_with = KubeError(403, "forbidden: no rights")
    with pytest.raises(KubeError):
        await controller.sync("tenant", "gpt2-1234abcd")


def test_the_store_keeps_only_what_the_operator_reads() -> None:
    store = Store()
    labels = {"app.kubernetes.io/instance": "gpt2-1234abcd"}
    managed = [
        {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": {"f:spec": {}}},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}},
    ]
    deployment = {
        "metadata": {"name": "gpt2-1234abcd", "namespace": "tenant", "labels": labels, "managedFields": managed},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "runtime"}]}}},
        "status": {"readyReplicas": 1},
    }
    store.deployments.reset([deployment])
    kept = store.deployments.one(("tenant", "gpt2-1234abcd"))
    assert kept is not None
    assert kept["spec"] == {"replicas": 2} and kept["status"] == {"readyReplicas": 1}
    assert [m["manager"] for m in kept["metadata"]["managedFields"]] == [FIELD_MANAGER]
    pod = {
        "metadata": {"name": "p", "namespace": "tenant", "labels": labels},
        "spec": {"x": 1},
        "status": {"podIP": "1"},
    }
    store.pods.event("ADDED", pod)
    assert store.pods.all(("tenant", "gpt2-1234abcd")) == [{"metadata": pod["metadata"], "status": {"podIP": "1"}}]


# Objects the cluster did not create under its children's names ---------------------------------------------------

NAME = "gpt2-1234abcd"
CACHED = {**GPT2, "cache": {"size": "10Gi"}}
VICTIM_SERVICE = {"labels": {"app": "victim"}}


def _conflict_message(kind: str, name: str = NAME) -> str:
    return f"{kind} tenant/{name} exists and is not managed by this ModelCluster"


async def test_a_foreign_service_is_never_applied(api: FakeKube, reconciler: Reconciler) -> None:
    victim = api.put("Service", NAME, VICTIM_SERVICE, {"selector": {"app": "victim"}})
    memory = Memory()
    body = cluster(GPT2)
    derived = await reconciler.reconcile(body, Seen(), memory)
    assert api.applies == []  # not the Service, and not the Deployment either
    assert api.stored("Service", "tenant", NAME) == victim
    assert derived.status.status == "failed"
    assert derived.status.reason == "NameConflict"
    assert derived.status.message == _conflict_message("Service")
    assert derived.status.endpoint is None  # the name is someone else's Service
    assert derived.status.observed_generation is None
    assert derived.recheck_after is not None and recheck_delay(derived) is not None
    assert [(e["reason"], e["type"], e["message"]) for e in api.events] == [
        ("NameConflict", "Warning", _conflict_message("Service"))
    ]
    # Rechecked while it stands: one read each time, no apply, no second Event.
    body["status"] = api.statuses[-1]
    for fresh in (False, True):
        api.reads.clear()
        again = await reconciler.reconcile(body, Seen(), Memory() if fresh else memory)
        assert again.status.reason == "NameConflict"
        assert ("Service", NAME) in api.reads
    assert api.applies == [] and len(api.events) == 1
    # Gone: the next look converges as usual.
    del api.objects[("Service", "tenant", NAME)]
    fixed = await reconciler.reconcile(body, Seen(), memory)
    assert [kind for kind, _, _ in api.applies] == ["Service", "Deployment"]
    assert fixed.status.status == "stopped" and fixed.recheck_after is None
    assert fixed.status.endpoint == f"http://{NAME}.tenant.svc:8000"
    assert memory.conflicts == {}


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({}, id="unlabelled"),
        pytest.param({"labels": {"app.kubernetes.io/managed-by": "modelcluster-operator"}}, id="our-label-only"),
        pytest.param(
            {
                "labels": {"app.kubernetes.io/managed-by": "modelcluster-operator"},
                "ownerReferences": [{"kind": "ModelCluster", "name": NAME, "uid": "u-old", "controller": True}],
            },
            id="an-earlier-namesake",
        ),
    ],
)
async def test_a_foreign_deployment_is_never_applied(api: FakeKube, reconciler: Reconciler, metadata: Body) -> None:
    victim = api.put("Deployment", NAME, metadata, {"replicas": 3})
    derived = await reconciler.reconcile(cluster(GPT2), Seen(), Memory())
    assert api.applies == []
    assert api.stored("Deployment", "tenant", NAME) == victim
    assert (derived.status.reason, derived.status.message) == ("NameConflict", _conflict_message("Deployment"))


async def test_a_foreign_cache_claim_is_never_applied(api: FakeKube, reconciler: Reconciler) -> None:
    claim = f"{NAME}-model-cache"
    victim = api.put("PersistentVolumeClaim", claim, {"labels": {"app": "victim"}}, {"resources": {}})
    memory = Memory()
    derived = await reconciler.reconcile(cluster(CACHED), Seen(), memory)
    # Not the claim, nor a Deployment whose pods would mount it.
    assert api.applies == []
    assert api.stored("PersistentVolumeClaim", "tenant", claim) == victim
    assert derived.status.message == _conflict_message("PersistentVolumeClaim", claim)
    del api.objects[("PersistentVolumeClaim", "tenant", claim)]
    await reconciler.reconcile(cluster(CACHED), Seen(), memory)
    kinds = [kind for kind, _, _ in api.applies]
    assert kinds == ["Service", "PersistentVolumeClaim", "Deployment"]


async def test_every_conflict_is_named(api: FakeKube, reconciler: Reconciler) -> None:
    api.put("Service", NAME, VICTIM_SERVICE)
    api.put("PersistentVolumeClaim", f"{NAME}-model-cache")
    derived = await reconciler.reconcile(cluster(CACHED), Seen(), Memory())
    assert derived.status.message == (
        f"{_conflict_message('Service')}; {_conflict_message('PersistentVolumeClaim', f'{NAME}-model-cache')}"
    )
    assert api.applies == []


async def test_the_cache_claim_is_read_only_with_an_apply_of_the_deployment(
    api: FakeKube, reconciler: Reconciler
) -> None:
    body, memory = await _converged(api, reconciler, CACHED)
    api.reads.clear()
    api.applies.clear()
    await reconciler.reconcile(body, _seen(api), memory)
    assert api.reads == [] and api.applies == []
    body["spec"] = {**CACHED, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3
    await reconciler.reconcile(body, _seen(api), memory)
    assert api.reads == [("PersistentVolumeClaim", f"{NAME}-model-cache")]  # the claim alone: the store has the rest
    assert [kind for kind, _, _ in api.applies] == ["PersistentVolumeClaim", "Deployment"]


async def test_a_foreign_object_in_the_store_needs_no_read(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    api.reads.clear()
    api.applies.clear()
    # Labelled like ours (so the store has it) and even stamped with our hash, but not the cluster's.
    impostor = api.stored("Service", "tenant", NAME)
    impostor["metadata"]["ownerReferences"] = []
    impostor["spec"]["selector"] = {"app": "victim"}
    impostor["metadata"]["resourceVersion"] = "999"
    derived = await reconciler.reconcile(
        body, Seen(deployment=api.stored("Deployment", "tenant", NAME), service=impostor), memory
    )
    assert api.reads == [] and api.applies == []
    assert (derived.status.reason, derived.status.message) == ("NameConflict", _conflict_message("Service"))
    assert derived.status.ready_replicas == 0 and derived.status.observed_generation == 2


async def test_a_child_the_store_lacks_but_that_is_ours_is_applied(api: FakeKube, reconciler: Reconciler) -> None:
    """After a restart or before the store caught up: the read shows it is ours, and the apply goes on."""
    body, _ = await _converged(api, reconciler, GPT2)
    api.applies.clear()
    api.reads.clear()
    body["spec"] = {**GPT2, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3
    derived = await reconciler.reconcile(body, Seen(), Memory())
    assert sorted(api.reads) == [("Deployment", NAME), ("Service", NAME)]
    assert derived.status.reason != "NameConflict"
    assert "Deployment" in [kind for kind, _, _ in api.applies]


def started_controller(reconciler: Reconciler) -> tuple[Store, Controller, WorkQueue]:
    """A controller started over a synced, empty store."""
    store = Store()
    store.synced.set()
    controller = Controller(store=store, reconciler=reconciler, metrics=ReconcileMetrics.create())
    return store, controller, controller.start()


async def test_controller_rechecks_a_name_conflict(api: FakeKube, reconciler: Reconciler) -> None:
    store, controller, queue = started_controller(reconciler)
    store.clusters.event("ADDED", cluster(GPT2))
    api.put("Service", NAME, VICTIM_SERVICE)
    delay = await controller.sync("tenant", NAME)
    assert delay is not None and delay > 1
    assert controller.memory.conflicts == {("tenant", NAME): _conflict_message("Service")}
    store.clusters.event("DELETED", cluster(GPT2))
    assert controller.memory.conflicts == {}
    await queue.close()


# The count: set by the create, carried by later applies until the autoscaler takes it over -------------------------


async def _spec_changed(body: Body) -> None:
    body["spec"] = {**GPT2, "imagePullSecrets": [{"name": "registry"}]}
    body["metadata"]["generation"] = 3


async def test_a_changed_spec_before_the_hand_over_carries_the_live_count(
    api: FakeKube, reconciler: Reconciler
) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    live = api.stored("Deployment", "tenant", NAME)
    api.applies.clear()
    await _spec_changed(body)
    await reconciler.reconcile(body, _seen(api), memory)
    [(kind, manager, applied)] = api.applies
    assert (kind, manager) == ("Deployment", FIELD_MANAGER)
    assert applied["spec"]["replicas"] == 0
    assert applied["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
    assert api.stored("Deployment", "tenant", NAME)["spec"]["replicas"] == 0  # not dropped by the apply
    assert sorted(api.reads) == [("Deployment", NAME), ("Service", NAME)]  # those of the create alone


async def test_a_count_changed_meanwhile_is_read_once_and_kept(api: FakeKube, reconciler: Reconciler) -> None:
    """The store's copy predates another change of the count: the precondition fails, one read, the apply again."""
    body, memory = await _converged(api, reconciler, GPT2)
    stale = _seen(api)
    # Someone (not the autoscaler's field manager) changed the count; the operator still owns the field.
    await api.apply(
        {"kind": "Deployment", "metadata": {"name": NAME, "namespace": "tenant"}, "spec": {"replicas": 0}}, "kubectl"
    )
    api.objects[("Deployment", "tenant", NAME)]["spec"]["replicas"] = 2
    api.applies.clear()
    api.reads.clear()
    await _spec_changed(body)
    await reconciler.reconcile(body, stale, memory)
    assert [applied["spec"]["replicas"] for _, _, applied in api.conflicts] == [0]
    assert api.reads == [("Deployment", NAME)]
    [(_, _, applied)] = api.applies
    assert applied["spec"]["replicas"] == 2
    assert api.stored("Deployment", "tenant", NAME)["spec"]["replicas"] == 2


async def test_the_hand_over_to_the_autoscaler_is_no_drift(api: FakeKube, reconciler: Reconciler) -> None:
    body, memory = await _converged(api, reconciler, GPT2)
    await _handed_over(api, 1)
    api.applies.clear()
    await reconciler.reconcile(body, _seen(api), memory)
    assert api.applies == []
    await _spec_changed(body)
    await reconciler.reconcile(body, _seen(api), memory)
    [(_, _, applied)] = api.applies
    assert "replicas" not in applied["spec"] and "resourceVersion" not in applied["metadata"]
    assert api.stored("Deployment", "tenant", NAME)["spec"]["replicas"] == 1


# A status write, remembered until the store shows it --------------------------------------------------------------


async def test_a_status_is_not_written_again_while_the_store_lags(api: FakeKube, reconciler: Reconciler) -> None:
    memory = Memory()
    body = cluster(GPT2)
    body["metadata"]["resourceVersion"] = "10"
    await reconciler.reconcile(body, Seen(), memory)
    [written] = api.statuses
    # A child's event wakes the cluster before the watch has brought the status: the same copy as before.
    for _ in range(2):
        await reconciler.reconcile(copy.deepcopy(body), _seen(api), memory)
    assert api.statuses == [written]
    # Caught up: the memory goes, and the store's copy decides again.
    body["status"] = written
    body["metadata"]["resourceVersion"] = str(api.version)
    await reconciler.reconcile(body, _seen(api), memory)
    assert memory.written == {} and api.statuses == [written]


async def test_a_status_changed_by_someone_else_after_the_write_is_written_back(
    api: FakeKube, reconciler: Reconciler
) -> None:
    memory = Memory()
    body = cluster(GPT2)
    await reconciler.reconcile(body, Seen(), memory)
    [written] = api.statuses
    body["status"] = {}  # cleared by another writer, after the operator's write
    body["metadata"]["resourceVersion"] = str(api.version + 5)
    await reconciler.reconcile(body, _seen(api), memory)
    assert len(api.statuses) == 2 and api.statuses[-1]["status"] == written["status"]


async def test_a_deleted_cluster_forgets_its_status_write(api: FakeKube, reconciler: Reconciler) -> None:
    store, controller, queue = started_controller(reconciler)
    store.clusters.event("ADDED", cluster(GPT2))
    await controller.sync("tenant", NAME)
    assert ("tenant", NAME) in controller.memory.written
    store.clusters.event("DELETED", cluster(GPT2))
    assert controller.memory.written == {}
    await queue.close()
