from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modelcluster.catalog import Catalog
from modelcluster.operator.config import FIELD_MANAGER
from modelcluster.operator.handlers import Controller, recheck_delay
from modelcluster.operator.kube import Body, KubeError
from modelcluster.operator.metrics import ReconcileMetrics
from modelcluster.operator.reconcile import Reconciler
from modelcluster.operator.replicas import REPLICAS_FIELD_MANAGER
from modelcluster.operator.workload import PodOptions


class FakeApi:
    """An in-memory apiserver good enough for the reconciler."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], Body] = {}
        self.applies: list[tuple[str, str, Body]] = []
        self.statuses: list[Body] = []
        self.pods: list[Body] = []
        self.fail_with: KubeError | None = None

    async def apply(self, body: Body, field_manager: str) -> Body:
        if self.fail_with is not None:
            raise self.fail_with
        key = (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
        self.applies.append((body["kind"], field_manager, body))
        current = self.objects.setdefault(key, {"metadata": dict(body["metadata"]), "spec": {}, "status": {}})
        current["spec"].update(body.get("spec", {}))
        return current

    async def get_cluster(self, namespace: str, name: str) -> Body | None:
        return self.objects.get(("ModelCluster", namespace, name))

    async def apply_cluster_status(self, namespace: str, name: str, status: Body, field_manager: str) -> None:
        assert field_manager == FIELD_MANAGER
        self.statuses.append(status)
        if ("ModelCluster", namespace, name) in self.objects:
            self.objects[("ModelCluster", namespace, name)]["status"] = status

    async def get_deployment(self, namespace: str, name: str) -> Body | None:
        return self.objects.get(("Deployment", namespace, name))

    async def list_pods(self, namespace: str, label_selector: str) -> list[Body]:
        assert "app.kubernetes.io/instance=" in label_selector
        return self.pods


def cluster(spec: dict[str, Any], name: str = "gpt2-1234abcd", status: Body | None = None) -> Body:
    return {
        "apiVersion": "modelcluster.dev/v1alpha1",
        "kind": "ModelCluster",
        "metadata": {"name": name, "namespace": "tenant", "uid": "u-1", "generation": 2},
        "spec": spec,
        "status": status or {},
    }


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def reconciler(api: FakeApi, default_catalog: Catalog) -> Reconciler:
    return Reconciler(api=api, catalog=default_catalog, pods=PodOptions(), unschedulable_deadline=timedelta(minutes=5))


async def test_create_applies_service_deployment_then_replicas(api: FakeApi, reconciler: Reconciler) -> None:
    derived = await reconciler.reconcile(
        cluster({"model": "openai-community/gpt2", "capacity": {"desired": 0, "max": 2}})
    )
    kinds = [(kind, manager) for kind, manager, _ in api.applies]
    assert kinds == [("Service", FIELD_MANAGER), ("Deployment", FIELD_MANAGER), ("Deployment", REPLICAS_FIELD_MANAGER)]
    # Created at the right count: a cluster created at zero never starts a pod.
    assert api.applies[1][2]["spec"]["replicas"] == 0
    assert api.applies[2][2]["spec"] == {"replicas": 0}
    assert derived.status.status == "stopped"
    assert api.statuses[-1]["status"] == "stopped"
    assert api.statuses[-1]["endpoint"] == "http://gpt2-1234abcd.tenant.svc:8000"
    assert api.statuses[-1]["selector"].startswith("app.kubernetes.io/name=")


async def test_update_leaves_replicas_to_the_autoscaler(api: FakeApi, reconciler: Reconciler) -> None:
    await reconciler.reconcile(cluster({"model": "openai-community/gpt2"}))
    api.applies.clear()
    await reconciler.reconcile(cluster({"model": "openai-community/gpt2", "capacity": {"desired": 3, "max": 4}}))
    kinds = [(kind, manager) for kind, manager, _ in api.applies]
    assert kinds == [("Service", FIELD_MANAGER), ("Deployment", FIELD_MANAGER)]
    assert "replicas" not in api.applies[1][2]["spec"]


async def test_unknown_model_without_task_creates_nothing(api: FakeApi, reconciler: Reconciler) -> None:
    derived = await reconciler.reconcile(cluster({"model": "someone/unknown"}))
    assert api.applies == []
    assert derived.status.status == "failed"
    assert derived.status.reason == "UnknownModel"
    assert "spec.task" in (derived.status.message or "")
    assert api.statuses[-1]["status"] == "failed"


async def test_unknown_model_with_task_runs(api: FakeApi, reconciler: Reconciler) -> None:
    await reconciler.reconcile(cluster({"model": "someone/unknown", "task": "fill-mask"}))
    assert [kind for kind, _, _ in api.applies] == ["Service", "Deployment", "Deployment"]


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
async def test_bad_input_never_raises(api: FakeApi, reconciler: Reconciler, body: Body, reason: str) -> None:
    derived = await reconciler.reconcile(body)
    assert derived.status.status == "failed"
    assert derived.status.reason == reason
    assert api.applies == []


async def test_unchanged_status_is_not_written_again(api: FakeApi, reconciler: Reconciler) -> None:
    body = cluster({"model": "someone/unknown"})
    await reconciler.reconcile(body)
    assert len(api.statuses) == 1
    body["status"] = api.statuses[-1]
    await reconciler.reconcile(body)
    assert len(api.statuses) == 1


async def test_foreign_status_fields_are_never_written(api: FakeApi, reconciler: Reconciler) -> None:
    body = cluster({"model": "someone/unknown"}, status={"queueDepth": 5, "lastRequestTime": "2026-01-01T00:00:00Z"})
    await reconciler.reconcile(body)
    assert "queueDepth" not in api.statuses[-1] and "lastRequestTime" not in api.statuses[-1]


async def test_controller_counts_metrics_and_rechecks(api: FakeApi, reconciler: Reconciler) -> None:
    metrics = ReconcileMetrics.create()
    controller = Controller(api=api, reconciler=reconciler, metrics=metrics)
    api.pods = [
        {
            "metadata": {"name": "p"},
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
    ]
    derived = await controller.converge(cluster({"model": "openai-community/gpt2"}), apply=True)
    assert recheck_delay(derived) is not None
    sample = metrics.registry.get_sample_value
    labels = {"controller": "modelcluster", "result": "requeue_after"}
    assert sample("controller_runtime_reconcile_total", labels) == 1
    api.fail_with = KubeError(500, "boom")
    with pytest.raises(KubeError):
        await controller.converge(cluster({"model": "openai-community/gpt2"}), apply=True)
    assert sample("controller_runtime_reconcile_errors_total", {"controller": "modelcluster"}) == 1
    assert sample("controller_runtime_reconcile_time_seconds_count", {"controller": "modelcluster"}) == 2


async def test_converge_by_key_skips_missing_and_deleting(api: FakeApi, reconciler: Reconciler) -> None:
    controller = Controller(api=api, reconciler=reconciler, metrics=ReconcileMetrics.create())
    assert await controller.converge_by_key("tenant", "absent", True) is None
    body = cluster({"model": "openai-community/gpt2"})
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    api.objects[("ModelCluster", "tenant", body["metadata"]["name"])] = body
    assert await controller.converge_by_key("tenant", body["metadata"]["name"], True) is None
    assert api.applies == []
