"""The decisions behind creating a Deployment with its count in one apply and handing the count to the autoscaler,
behind remembering a status write until the store shows it, and behind the autoscaler's first status write."""

from __future__ import annotations

from typing import Any

import pytest

from modelcluster.operator.autoscaling.loop import STATUS_INTERVAL_S, _Written, status_write_due
from modelcluster.operator.builders.children import owned_fields, owns_replicas
from modelcluster.operator.builders.replicas import Carried, carried_replicas, with_carried
from modelcluster.operator.config import FIELD_MANAGER
from modelcluster.operator.controller.reconcile import FOREIGN_STATUS_FIELDS
from modelcluster.operator.controller.status_memory import WrittenStatus, as_written, caught_up, written_status

Body = dict[str, Any]


def deployment(fields: Body | None, replicas: Any = 2, version: str | None = "7", manager: str = FIELD_MANAGER) -> Body:
    """A Deployment as the store has it: ``fields`` is ``manager``'s applied fieldsV1 (None: no entry of its own)."""
    metadata: Body = {"name": "m", "namespace": "t"}
    if version is not None:
        metadata["resourceVersion"] = version
    if fields is not None:
        metadata["managedFields"] = [{"manager": manager, "operation": "Apply", "fieldsV1": fields}]
    spec: Body = {} if replicas is None else {"replicas": replicas}
    return {"metadata": metadata, "spec": spec}


OWNED = {"f:spec": {"f:replicas": {}, "f:template": {}}}
HANDED_OVER = {"f:spec": {"f:template": {}}}


@pytest.mark.parametrize(
    ("live", "owned"),
    [
        pytest.param(deployment(OWNED), True, id="created-by-the-operator"),
        pytest.param(deployment(HANDED_OVER), False, id="taken-over-by-the-autoscaler"),
        pytest.param(deployment({"f:replicas": {}}), False, id="not-under-spec"),
        pytest.param(deployment(None), False, id="no-entry"),
        pytest.param(deployment(OWNED, manager="someone-else"), False, id="another-manager"),
        pytest.param(None, False, id="no-object"),
    ],
)
def test_owns_replicas(live: Body | None, owned: bool) -> None:
    assert owns_replicas(live, FIELD_MANAGER) is owned


def test_the_hand_over_of_replicas_is_no_change_of_the_owned_fields() -> None:
    assert owned_fields(deployment(OWNED), FIELD_MANAGER) == owned_fields(deployment(HANDED_OVER), FIELD_MANAGER)
    assert owned_fields(deployment({"f:spec": {}}), FIELD_MANAGER) != owned_fields(deployment(OWNED), FIELD_MANAGER)
    assert owned_fields(deployment(None), FIELD_MANAGER) is None


@pytest.mark.parametrize(
    ("live", "carried"),
    [
        pytest.param(deployment(OWNED), Carried(2, "7"), id="still-the-operators"),
        pytest.param(deployment(OWNED, replicas=0), Carried(0, "7"), id="zero-is-a-count"),
        pytest.param(deployment(HANDED_OVER), None, id="the-autoscalers"),
        pytest.param(deployment(OWNED, replicas=None), None, id="no-count"),
        pytest.param(deployment(OWNED, replicas=True), None, id="not-a-number"),
        pytest.param(deployment(OWNED, version=None), None, id="no-version"),
        pytest.param(None, None, id="no-object"),
    ],
)
def test_carried_replicas(live: Body | None, carried: Carried | None) -> None:
    assert carried_replicas(live, FIELD_MANAGER) == carried


def test_with_carried_sets_the_count_under_a_precondition_and_leaves_the_body_alone() -> None:
    desired = {"kind": "Deployment", "metadata": {"name": "m", "namespace": "t"}, "spec": {"template": {}}}
    body = with_carried(desired, Carried(3, "41"))
    assert body["spec"] == {"template": {}, "replicas": 3}
    assert body["metadata"]["resourceVersion"] == "41"
    assert desired == {"kind": "Deployment", "metadata": {"name": "m", "namespace": "t"}, "spec": {"template": {}}}


# A status write, remembered until the store shows it --------------------------------------------------------------


def cluster(version: str | None, uid: str = "u-1", status: Body | None = None) -> Body:
    metadata: Body = {"name": "m", "namespace": "t", "uid": uid}
    if version is not None:
        metadata["resourceVersion"] = version
    return {"metadata": metadata, "status": status or {}}


WRITTEN = WrittenStatus("u-1", "50", {"status": "stopped", "observedGeneration": 1})


@pytest.mark.parametrize(
    ("answered", "written"),
    [
        pytest.param({"metadata": {"resourceVersion": "50"}}, WRITTEN, id="answered-with-a-version"),
        pytest.param({"metadata": {}}, None, id="no-version"),
        pytest.param(None, None, id="no-answer"),
    ],
)
def test_written_status(answered: Body | None, written: WrittenStatus | None) -> None:
    assert written_status(cluster("49"), answered, {"status": "stopped", "observedGeneration": 1}) == written


@pytest.mark.parametrize(
    ("body", "shows"),
    [
        pytest.param(cluster("49"), False, id="older"),
        pytest.param(cluster("50"), True, id="the-write"),
        pytest.param(cluster("51"), True, id="later"),
        pytest.param(cluster("49", uid="u-2"), True, id="another-cluster-of-the-name"),
        pytest.param(cluster(None), True, id="no-version"),
        pytest.param(cluster("not-a-number"), True, id="odd-version"),
    ],
)
def test_caught_up(body: Body, shows: bool) -> None:
    assert caught_up(body, WRITTEN) is shows


def test_as_written_keeps_the_other_writers_fields_and_drops_what_the_write_left_out() -> None:
    stale = cluster("49", status={"status": "pending", "message": "old", "queueDepth": 3, "lastRequestTime": "t"})
    shown = as_written(stale, WRITTEN, FOREIGN_STATUS_FIELDS)
    assert shown["status"] == {"status": "stopped", "observedGeneration": 1, "queueDepth": 3, "lastRequestTime": "t"}
    assert shown["metadata"] == stale["metadata"]
    assert stale["status"]["status"] == "pending"


# The autoscaler's first status write ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "last", "depth", "due"),
    [
        pytest.param(_Written(), None, 0, False, id="never-requested"),
        pytest.param(_Written(), None, 2, True, id="a-queue-without-a-clock"),
        pytest.param(_Written(), 1000.0, 0, True, id="requested-before"),
        pytest.param(_Written(at=0.0, queue_depth=0), None, 0, False, id="written-unchanged"),
        pytest.param(_Written(at=0.0, queue_depth=0), None, 1, True, id="changed-an-interval-later"),
        pytest.param(_Written(at=1000.0, queue_depth=0), None, 1, False, id="changed-within-the-interval"),
    ],
)
def test_status_write_due(written: _Written, last: float | None, depth: int, due: bool) -> None:
    assert status_write_due(written, last, depth, 1000.0 + STATUS_INTERVAL_S / 2) is due
