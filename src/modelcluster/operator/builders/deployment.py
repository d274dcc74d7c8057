"""The Deployment of a ModelCluster, without ``spec.replicas`` (see :mod:`.replicas`)."""

from __future__ import annotations

from typing import Any

from modelcluster.api.labels import MODEL_ID_ANNOTATION, selector_labels, standard_labels
from modelcluster.operator.builders.model_cache import cache_access_mode
from modelcluster.operator.builders.pod import build_pod_template
from modelcluster.operator.builders.workload import PodOptions, Workload

# The rollout deadline's slack over the startup probe's budget.
PROGRESS_SLACK_SECONDS = 100


def rollout_strategy(workload: Workload) -> dict[str, Any]:
    """A rolling update by the cluster's rollout: by default a new pod is ready before an old one goes
    (``maxSurge: 1, maxUnavailable: 0``); a claim only one pod may mount forces one-down-one-up."""
    rollout = workload.placement.rollout
    surge, unavailable = rollout.max_surge, rollout.max_unavailable
    if cache_access_mode(workload) == "ReadWriteOncePod":
        surge, unavailable = 0, 1
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}


def build_deployment(workload: Workload, options: PodOptions) -> dict[str, Any]:
    """The Deployment applied by the ``modelcluster-operator`` field manager.

    ``spec.replicas`` is left out on purpose: the apply that creates the Deployment adds it, later ones
    carry the live count until the autoscaler takes it over (:mod:`modelcluster.operator.builders.replicas`).
    """
    placement = workload.placement
    labels = standard_labels(workload.name, placement.model_id, placement.task)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": labels,
            "annotations": {MODEL_ID_ANNOTATION: placement.model_id},
            "ownerReferences": [workload.owner.reference()],
        },
        "spec": {
            "selector": {"matchLabels": selector_labels(workload.name)},
            "revisionHistoryLimit": 3,
            # Model downloads are slow: the deadline covers the startup probe's budget.
            "progressDeadlineSeconds": options.startup_timeout_seconds + PROGRESS_SLACK_SECONDS,
            "strategy": rollout_strategy(workload),
            "template": build_pod_template(workload, labels, options),
        },
    }
