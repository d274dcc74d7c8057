"""Whether an object under a child's name is the ModelCluster's own (the guard against taking objects over)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelcluster.api import ClusterPhase, ModelCache
from modelcluster.operator.builders.model_cache import build_cache_claim
from modelcluster.operator.builders.ownership import (
    NAME_CONFLICT_RECHECK_SECONDS,
    Ownership,
    controller_uid,
    name_conflict,
    name_conflicts,
    ownership,
    owns,
)
from modelcluster.operator.builders.service import build_service
from modelcluster.operator.builders.status import NAME_CONFLICT, Observation, derive_status
from modelcluster.operator.builders.workload import Owner, PodOptions, Workload

OWNER = Owner(name="foo-1234abcd", namespace="t-123", uid="uid-1")
MANAGED = {"app.kubernetes.io/managed-by": "modelcluster-operator", "app.kubernetes.io/instance": "foo-1234abcd"}


def reference(uid: str = "uid-1", *, controller: bool | None = True, kind: str = "ModelCluster") -> dict[str, Any]:
    ref: dict[str, Any] = {"apiVersion": "modelcluster.dev/v1alpha1", "kind": kind, "name": "foo-1234abcd", "uid": uid}
    if controller is not None:
        ref["controller"] = controller
    return ref


def service(labels: dict[str, str] | None = None, references: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "foo-1234abcd", "namespace": "t-123"}
    if labels is not None:
        metadata["labels"] = labels
    if references is not None:
        metadata["ownerReferences"] = references
    return {"kind": "Service", "metadata": metadata, "spec": {"selector": {"app": "victim"}}}


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        pytest.param(None, Ownership.ABSENT, id="nothing-there"),
        pytest.param(service(MANAGED, [reference()]), Ownership.OURS, id="ours"),
        pytest.param(
            service(MANAGED, [reference("uid-other", controller=False, kind="ConfigMap"), reference()]),
            Ownership.OURS,
            id="ours-with-another-non-controller-owner",
        ),
        pytest.param(service(), Ownership.FOREIGN, id="no-labels-no-owner"),
        pytest.param(service({"app": "victim"}), Ownership.FOREIGN, id="someone-elses-labels"),
        pytest.param(service(MANAGED), Ownership.FOREIGN, id="our-labels-copied-no-owner"),
        pytest.param(service(MANAGED, []), Ownership.FOREIGN, id="our-labels-empty-owners"),
        pytest.param(service({"app": "victim"}, [reference()]), Ownership.FOREIGN, id="our-owner-without-our-label"),
        pytest.param(service(MANAGED, [reference("uid-old")]), Ownership.FOREIGN, id="a-namesake-created-earlier"),
        pytest.param(service(MANAGED, [reference(controller=False)]), Ownership.FOREIGN, id="owner-not-controller"),
        pytest.param(service(MANAGED, [reference(controller=None)]), Ownership.FOREIGN, id="owner-controller-unset"),
        pytest.param(
            service(MANAGED, [reference("uid-other", kind="Deployment")]), Ownership.FOREIGN, id="another-controller"
        ),
        pytest.param(
            service({**MANAGED, "app.kubernetes.io/managed-by": "helm"}, [reference()]),
            Ownership.FOREIGN,
            id="managed-by-someone-else",
        ),
        pytest.param({"kind": "Service", "metadata": None}, Ownership.FOREIGN, id="no-metadata"),
    ],
)
def test_ownership(live: dict[str, Any] | None, expected: Ownership) -> None:
    assert ownership(live, OWNER) is expected
    assert (name_conflict("Service", live, OWNER) is not None) is (expected is Ownership.FOREIGN)


def test_an_owner_without_a_uid_owns_nothing() -> None:
    unsaved = Owner(name="foo-1234abcd", namespace="t-123", uid="")
    assert ownership(service(MANAGED, [reference("")]), unsaved) is Ownership.FOREIGN


@pytest.mark.parametrize("build", ["service", "claim"])
def test_what_the_operator_builds_is_its_own(make_workload: Any, build: str) -> None:
    workload = make_workload()
    if build == "service":
        child = build_service(workload, PodOptions())
    else:
        placement = replace(workload.placement, cache=ModelCache(size="10Gi"))
        child = build_cache_claim(Workload(owner=workload.owner, placement=placement))
    assert child is not None
    assert ownership(child, workload.owner) is Ownership.OURS
    assert controller_uid(child) == workload.owner.uid


def test_the_conflict_names_the_object() -> None:
    problem = name_conflict("Service", service(), OWNER)
    assert problem is not None
    assert problem.reason == NAME_CONFLICT == "NameConflict"
    assert problem.message == "Service t-123/foo-1234abcd exists and is not managed by this ModelCluster"
    assert problem.recheck_after == NAME_CONFLICT_RECHECK_SECONDS


def test_several_conflicts_are_one_problem() -> None:
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "foo-1234abcd-model-cache", "namespace": "t-123"}}
    problems = [p for p in (name_conflict("Service", service(), OWNER), name_conflict("PVC", claim, OWNER)) if p]
    joined = name_conflicts(problems)
    assert joined is not None and joined.reason == NAME_CONFLICT
    assert joined.message == (
        "Service t-123/foo-1234abcd exists and is not managed by this ModelCluster; "
        "PVC t-123/foo-1234abcd-model-cache exists and is not managed by this ModelCluster"
    )
    assert name_conflicts([]) is None
    assert name_conflicts(problems[:1]) == problems[0]


def test_a_conflict_fails_the_cluster_and_asks_for_a_recheck() -> None:
    problem = name_conflict("Service", service(), OWNER)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    derived = derive_status(Observation(generation=3, now=now, spec_problem=problem, in_place=False), timedelta(1))
    assert derived.status.status is ClusterPhase.FAILED
    assert derived.status.reason == NAME_CONFLICT
    assert derived.status.message == "Service t-123/foo-1234abcd exists and is not managed by this ModelCluster"
    assert derived.recheck_after == NAME_CONFLICT_RECHECK_SECONDS
    ready = next(c for c in derived.status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", NAME_CONFLICT)


@pytest.mark.parametrize(
    ("uid", "expected"), [("uid-1", True), ("uid-other", False), ("", False)], ids=["same", "other", "no-uid"]
)
def test_owns_reads_the_owner_from_the_cluster(uid: str, expected: bool) -> None:
    body = {"kind": "ModelCluster", "metadata": {"name": "foo-1234abcd", "namespace": "t-123", "uid": uid}}
    assert owns(body, service(MANAGED, [reference()])) is expected
    assert owns(body, None) is False
