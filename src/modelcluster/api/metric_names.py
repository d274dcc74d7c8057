"""Names of the metrics one process exports and another reads: the autoscaler's demand signals.

The gateway exports the per-model demand and the runtime its own queue; the operator's
autoscaler scrapes both and matches these names (``modelcluster.operator`` signals).
"""

from __future__ import annotations

GATEWAY_OUTSTANDING = "modelcluster_gateway_outstanding_requests"
GATEWAY_HELD = "modelcluster_gateway_held_requests"
GATEWAY_LAST = "modelcluster_gateway_last_request_timestamp_seconds"
#: The labels of the gateway's per-model series: the cluster's namespace and object name.
GATEWAY_MODEL_LABELS = ("namespace", "model")

RUNTIME_QUEUE = "modelcluster_runtime_queue_depth"
RUNTIME_IN_FLIGHT = "modelcluster_runtime_in_flight_requests"
RUNTIME_LAST = "modelcluster_runtime_last_request_timestamp_seconds"
