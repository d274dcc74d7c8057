"""The ModelCluster contract as pydantic models: the single source of truth.

The CRD in ``crds/modelclusters.yaml`` is generated from these models
(``modelcluster crd``); the operator and the gateway parse objects with them.
"""

from modelcluster.api.errors import ErrorBody
from modelcluster.api.modelcluster import (
    API_VERSION,
    GROUP,
    KIND,
    MODEL_ID_MAX_LENGTH,
    MODEL_ID_PATTERN,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Capacity,
    ClusterPhase,
    Condition,
    ConditionStatus,
    ModelClusterSpec,
    ModelClusterStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "MODEL_ID_MAX_LENGTH",
    "MODEL_ID_PATTERN",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "Capacity",
    "ClusterPhase",
    "Condition",
    "ConditionStatus",
    "ErrorBody",
    "ModelClusterSpec",
    "ModelClusterStatus",
]
