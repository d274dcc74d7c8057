"""The warm pool's pure decisions: pool specs, the standby pod, which standby a wake claims, hand-over, status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelcluster.api import BorrowedPod, ConditionStatus, ModelClusterStatus
from modelcluster.api.labels import APP_NAME, INSTANCE, NAME, selector_labels
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.pod_auth import VERIFIER_ENV
from modelcluster.api.warm_pool import CLAIMED, POOL_LABEL, STANDBY, STANDBY_PATH, STATE_LABEL
from modelcluster.catalog import load_catalog, resolve
from modelcluster.kube.objects import rfc3339
from modelcluster.operator.builders.standby_status import (
    CONDITION,
    borrowed_pod,
    lending_changed,
    standby_condition,
    wake_path_times,
)
from modelcluster.operator.builders.status import Observation, derive_status
from modelcluster.operator.builders.warm_pool import (
    CLAIM_WINDOW,
    PoolSpec,
    build_standby_pod,
    claim_patch,
    deficit,
    handover_due,
    parse_pool,
    pool_for,
    resolve_pools,
    to_delete,
    waiting,
    wake_to_claim,
)
from modelcluster.operator.builders.workload import PodOptions

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
VERIFIER = "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("text/micro=1", PoolSpec("text", "micro", 1)),
        (" llm/xs=3 ", PoolSpec("llm", "xs", 3)),
        (
            "llm/micro=1@registry.local/runtime-llm:0.1.0",
            PoolSpec("llm", "micro", 1, "registry.local/runtime-llm:0.1.0"),
        ),
        ("text/micro=0", PoolSpec("text", "micro", 0)),
        ("text/micro=2@img@sha256:abc", PoolSpec("text", "micro", 2, "img@sha256:abc")),
    ],
)
def test_a_pool_is_family_tier_size_and_an_optional_image(text: str, expected: PoolSpec) -> None:
    assert parse_pool(text) == expected


@pytest.mark.parametrize("text", ["text", "text/micro", "text=1", "Text/micro=1", "text/micro=-1", "text/micro=65", ""])
def test_anything_else_is_refused_with_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"FAMILY/TIER=SIZE|at most"):
        parse_pool(text)


@pytest.mark.parametrize(
    ("specs", "error"),
    [
        ([PoolSpec("nope", "micro", 1)], "no family"),
        ([PoolSpec("text", "nano", 1)], "no tier"),
        ([PoolSpec("text", "micro", 1), PoolSpec("text", "micro", 2)], "twice"),
    ],
)
def test_pools_are_checked_against_the_catalog(specs: list[PoolSpec], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        resolve_pools(specs, load_catalog())


def _pools() -> Any:
    return resolve_pools(
        [PoolSpec("text", "micro", 1), PoolSpec("llm", "micro", 2, "modelcluster.dev/local/runtime-llm:0.1.0")],
        load_catalog(),
    )


@pytest.mark.parametrize(
    ("model", "pool"),
    [
        ("sentence-transformers/all-MiniLM-L6-v2", "text-micro"),
        ("modelcluster/tiny-chat", "llm-micro"),
        ("google/vit-base-patch16-224", None),  # vision: no pool
        ("Salesforce/SFR-Embedding-2_R", None),  # text, but another tier
    ],
)
def test_a_cluster_borrows_from_the_pool_of_its_family_tier_and_image(model: str, pool: str | None) -> None:
    found = pool_for(resolve(load_catalog(), model, None), _pools())
    assert (found.name if found else None) == pool


def test_the_standby_pod_has_no_model_answers_its_own_credential_and_no_cluster_selects_it() -> None:
    (text, _) = _pools()
    pod = build_standby_pod(text, "dev", "standby-text-micro-abc", "nonce", VERIFIER, PodOptions())
    labels = pod["metadata"]["labels"]
    assert labels[POOL_LABEL] == "text-micro" and labels[STATE_LABEL] == STANDBY
    assert labels[NAME] != APP_NAME and INSTANCE not in labels  # no cluster's Service selects it
    (container,) = pod["spec"]["containers"]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert env["STANDBY_FAMILY"] == "text" and env[VERIFIER_ENV] == VERIFIER
    assert "MODEL_ID" not in env and "TASK" not in env
    assert container["image"] == "ghcr.io/modelcluster/runtime-text:0.1.0"
    assert container["startupProbe"]["httpGet"]["path"] == STANDBY_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"  # never Ready until a claim loaded
    assert "tcpSocket" in container["livenessProbe"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"  # it holds its tier's GPU


def _pod(name: str, state: str | None = STANDBY, *, started: bool = True, created: str = "2026-01-01T11:00:00Z",
         ready: bool = False, restarts: int = 0, deleting: bool = False, ip: str | None = "10.0.0.1",
         cluster: str = "c") -> dict[str, Any]:  # fmt: skip
    labels: dict[str, str] = {POOL_LABEL: "text-micro"} if state else {}
    if state:
        labels[STATE_LABEL] = state
    if state in (None, CLAIMED):
        labels.update(selector_labels(cluster))
    if state == CLAIMED:
        labels["modelcluster.dev/borrowed-by"] = cluster
    meta: dict[str, Any] = {"name": name, "namespace": "dev", "labels": labels, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    status: dict[str, Any] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"started": started, "restartCount": restarts, "state": {"running": {}}}],
    }
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


def test_warm_standbys_are_claimed_first_then_the_oldest() -> None:
    pods = [
        _pod("cold-old", started=False, created="2026-01-01T10:00:00Z"),
        _pod("warm-new", created="2026-01-01T11:30:00Z"),
        _pod("warm-old", created="2026-01-01T11:00:00Z"),
        _pod("no-ip", ip=None),
        _pod("leaving", deleting=True),
        _pod("restarted", restarts=1),
        _pod("taken", CLAIMED),
    ]
    assert [pod["metadata"]["name"] for pod in waiting(pods)] == ["warm-old", "warm-new", "cold-old"]


@pytest.mark.parametrize(
    ("pods", "missing"),
    [
        ([], 2),
        ([_pod("a")], 1),
        ([_pod("a", started=False), _pod("b")], 0),
        ([_pod("a"), _pod("b", CLAIMED)], 0),  # a borrowed pod keeps its place until it leaves
        ([_pod("a"), _pod("b", CLAIMED, deleting=True)], 1),  # handed over: the pool refills
        ([_pod("a"), _pod("b", deleting=True)], 1),
        ([_pod("a"), _pod("b", restarts=2)], 1),
        ([_pod("a"), _pod("b"), _pod("c")], 0),
    ],
)
def test_the_pool_refills_to_its_size(pods: list[dict[str, Any]], missing: int) -> None:
    (_, llm) = _pools()  # size 2
    assert deficit(llm, pods) == missing


@pytest.mark.parametrize(
    ("pod", "delete"),
    [(_pod("a"), False), (_pod("a", restarts=1), True), (_pod("a", CLAIMED, restarts=1), True),
     (_pod("a", deleting=True, restarts=1), False)],
)  # fmt: skip
def test_a_pool_pod_whose_process_ended_is_deleted(pod: dict[str, Any], delete: bool) -> None:
    assert to_delete(pod) is delete


def _cluster(wake: datetime | None) -> dict[str, Any]:
    annotations = {WAKE_ANNOTATION: rfc3339(wake)} if wake else {}
    return {"metadata": {"name": "c", "namespace": "dev", "annotations": annotations}}


@pytest.mark.parametrize(
    ("wake", "pods", "claimed", "claims"),
    [
        (NOW - timedelta(seconds=1), [], set(), True),
        (None, [], set(), False),
        (NOW - CLAIM_WINDOW - timedelta(seconds=1), [], set(), False),  # too old: its own pod is near
        (NOW - timedelta(seconds=1), [], {"wake"}, True),  # another wake was claimed, not this one
        (NOW - timedelta(seconds=1), [_pod("own", None, ready=True)], set(), False),  # already serving
        (NOW - timedelta(seconds=1), [_pod("own", None, ready=False)], set(), True),  # own pod still starting
        (NOW - timedelta(seconds=1), [_pod("borrowed", CLAIMED)], set(), False),  # one borrowed already
        (NOW - timedelta(seconds=1), [_pod("gone", CLAIMED, deleting=True)], set(), True),
    ],
)
def test_a_new_wake_without_a_ready_pod_claims_one_standby(
    wake: datetime | None, pods: list[dict[str, Any]], claimed: set[str], claims: bool
) -> None:
    found = wake_to_claim(_cluster(wake), pods, claimed, NOW)
    assert (found is not None) is claims
    if found is not None:
        assert wake_to_claim(_cluster(wake), pods, {found}, NOW) is None  # once per wake


@pytest.mark.parametrize(
    ("pods", "due"),
    [
        ([_pod("b", CLAIMED)], False),
        ([_pod("b", CLAIMED, ready=True)], False),  # the borrowed pod's own readiness hands nothing over
        ([_pod("b", CLAIMED), _pod("own", None)], False),
        ([_pod("b", CLAIMED), _pod("own", None, ready=True)], True),
        ([_pod("b", CLAIMED), _pod("own", None, ready=True, deleting=True)], False),
    ],
)
def test_the_borrowed_pod_leaves_once_an_own_pod_is_ready(pods: list[dict[str, Any]], due: bool) -> None:
    assert handover_due(pods) is due


def _policy_claim_keys() -> list[str]:
    docs = yaml.safe_load_all((REPO / "operator" / "rbac.yaml").read_text())
    (policy,) = [doc for doc in docs if doc and doc.get("kind") == "ValidatingAdmissionPolicy"]
    (claim_keys,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "claimKeys"]
    return [key.strip().strip("'") for key in claim_keys.strip().strip("[]").split(",")]


def test_a_claim_moves_the_pod_into_the_clusters_selector_with_only_what_the_admission_policy_allows() -> None:
    patch = claim_patch("c", "sentence-transformers/all-MiniLM-L6-v2", "sentence-similarity", "wake", NOW)
    labels = patch["metadata"]["labels"]
    assert selector_labels("c").items() <= labels.items() and labels[STATE_LABEL] == CLAIMED
    allowed = set(_policy_claim_keys())
    assert set(labels) <= allowed and set(patch["metadata"]["annotations"]) <= allowed


def test_the_status_says_a_standby_served_then_handed_over() -> None:
    borrowed = _pod("b", CLAIMED)
    (serving,) = standby_condition([borrowed], None, 1, NOW)
    assert (serving.type, serving.status, serving.reason) == (CONDITION, ConditionStatus.TRUE, "Borrowed")
    previous = ModelClusterStatus(conditions=[serving])
    (handed,) = standby_condition([_pod("own", None, ready=True)], previous, 1, NOW + timedelta(seconds=5))
    assert (handed.status, handed.reason) == (ConditionStatus.FALSE, "HandedOver")
    assert standby_condition([_pod("own", None)], ModelClusterStatus(conditions=[handed]), 1, NOW) == [handed]
    assert standby_condition([_pod("own", None)], None, 1, NOW) == []  # never borrowed: no condition


def test_the_status_names_the_borrowed_standby_while_it_serves_for_the_gateway_to_route_to() -> None:
    own = _pod("own", None, ip="10.0.0.2")
    borrowed = _pod("text-micro-ab12cd", CLAIMED, ip="10.0.0.9")
    assert borrowed_pod([own, borrowed], 8000) == BorrowedPod(name="text-micro-ab12cd", address="10.0.0.9", port=8000)
    assert borrowed_pod([own], 8000) is None  # the cluster's own pods are the slice's
    assert borrowed_pod([_pod("b", CLAIMED, deleting=True)], 8000) is None  # handing over: it drains, gets nothing
    assert borrowed_pod([_pod("b", CLAIMED, ip=None)], 8000) is None  # no address yet
    assert borrowed_pod([_pod("w", STANDBY)], 8000) is None  # waiting in its pool: no one's
    status = derive_status(Observation(generation=1, now=NOW, pods=[own, borrowed], pod_port=8080), timedelta(60))
    assert status.status.to_k8s()["borrowedPod"] == {"name": "text-micro-ab12cd", "address": "10.0.0.9", "port": 8080}
    gone = derive_status(Observation(generation=1, now=NOW, pods=[own], previous=status.status), timedelta(60))
    assert "borrowedPod" not in gone.status.to_k8s()


@pytest.mark.parametrize(
    ("new", "old", "changed"),
    [
        (_pod("b", CLAIMED), _pod("b", STANDBY), True),  # claimed: lent now
        (_pod("b", CLAIMED), None, True),  # first seen claimed under the cluster
        (_pod("b", CLAIMED, deleting=True), _pod("b", CLAIMED), True),  # handing over: stops serving
        (None, _pod("b", CLAIMED), True),  # gone
        (_pod("b", CLAIMED, ip="10.0.0.9"), _pod("b", CLAIMED, ip=None), True),  # its address came
        (_pod("b", CLAIMED, ready=True), _pod("b", CLAIMED), False),  # Ready: the same lending
        (_pod("own", None, ready=True), _pod("own", None), False),  # the cluster's own pods coalesce as before
        (_pod("w", STANDBY), None, False),
    ],
)
def test_only_a_pod_starting_or_ending_a_loan_is_acted_on_at_once(new: Any, old: Any, changed: bool) -> None:
    assert lending_changed(new, old) is changed


def test_the_histogram_path_of_a_borrowed_pod_runs_from_the_wake() -> None:
    pod = _pod("b", CLAIMED, ready=True)
    pod["metadata"]["annotations"] = {
        "modelcluster.dev/claimed-for-wake": "2026-01-01T12:00:00Z",
        "modelcluster.dev/claimed-at": "2026-01-01T12:00:00Z",
    }
    pod["status"]["conditions"][0]["lastTransitionTime"] = "2026-01-01T12:00:01Z"
    path, times, steps = wake_path_times(pod)
    assert path == "standby" and [phase for phase, _, _ in steps] == ["claimed", "loaded", "total"]
    assert times["ModelLoaded"] is not None and times["woken"] is not None
    assert wake_path_times(_pod("own", None))[0] == "cold"
