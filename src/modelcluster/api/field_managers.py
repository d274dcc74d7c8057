"""The server-side-apply field managers: who owns which fields of the objects the system writes."""

from __future__ import annotations

#: The operator's reconciler: a cluster's children and its status.
OPERATOR = "modelcluster-operator"
#: The operator's replica writes (``spec.replicas`` of a Deployment), apart so that a reconcile never resets them.
OPERATOR_REPLICAS = "modelcluster-operator-replicas"
#: The autoscaler's status writes and the component of its Events.
AUTOSCALER = "modelcluster-autoscaler"
#: The gateway: ModelClusters it creates for a first request, and its wake annotations.
GATEWAY = "modelcluster-gateway"
