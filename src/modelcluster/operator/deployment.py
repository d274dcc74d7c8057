"""The Deployment of a ModelCluster, without ``spec.replicas`` (see :mod:`.replicas`)."""

from __future__ import annotations

from typing import Any

from modelcluster.operator.labels import MODEL_ID_ANNOTATION, selector_labels, standard_labels
from modelcluster.operator.pod import STARTUP_PERIOD_SECONDS, build_pod_template
from modelcluster.operator.workload import PodOptions, Workload


def build_deployment(workload: Workload, options: PodOptions) -> dict[str, Any]:
    """The Deployment applied by the ``modelcluster-operator`` field manager.

    ``spec.replicas`` is left out on purpose: it is applied on its own by
    :func:`modelcluster.operator.replicas.build_replicas_apply`.
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
            "progressDeadlineSeconds": options.startup_timeout_seconds + 10 * STARTUP_PERIOD_SECONDS,
            # GPUs are scarce: replace pods one at a time without asking for an extra GPU.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": build_pod_template(workload, labels, options),
        },
    }
