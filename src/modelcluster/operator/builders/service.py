"""The Service in front of a ModelCluster's pods."""

from __future__ import annotations

from typing import Any

from modelcluster.api.labels import MODEL_ID_ANNOTATION, selector_labels, standard_labels
from modelcluster.operator.builders.pod import PORT_NAME
from modelcluster.operator.builders.workload import PodOptions, Workload


def build_service(workload: Workload, options: PodOptions) -> dict[str, Any]:
    """A ClusterIP Service on the runtime's port, selecting only ready pods."""
    placement = workload.placement
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": workload.name,
            "namespace": workload.namespace,
            "labels": standard_labels(workload.name, placement.model_id, placement.task),
            "annotations": {MODEL_ID_ANNOTATION: placement.model_id},
            "ownerReferences": [workload.owner.reference()],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(workload.name),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": options.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                    "appProtocol": "http",
                }
            ],
        },
    }


def service_endpoint(name: str, namespace: str, port: int) -> str:
    """The in-cluster URL of a cluster's Service."""
    return f"http://{name}.{namespace}.svc:{port}"
