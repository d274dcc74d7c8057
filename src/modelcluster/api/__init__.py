"""The contracts as pydantic models and tables: the single source of truth.

The CRDs in ``crds/`` (ModelCluster, Tenant) are generated from these models
(``modelcluster crd``); the operator, the gateway and the runtime parse with them.
"""

from modelcluster.api.errors import ApiError, ErrorBody, InputError, PayloadTooLarge, error_body
from modelcluster.api.inference import ContentBlock, Message, RunRequest, parse_run_request
from modelcluster.api.inputs import InputSpec, Payload, normalize
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
    BorrowedPod,
    Capacity,
    ClusterPhase,
    Condition,
    ConditionStatus,
    LocalObjectReference,
    ModelCache,
    ModelClusterSpec,
    ModelClusterStatus,
    Rollout,
    SecretKeySelector,
)
from modelcluster.api.tasks import TASKS, TaskInfo, task_info, task_names
from modelcluster.api.tenant import (
    BudgetPeriod,
    Tenant,
    TenantBudget,
    TenantQuotas,
    TenantSpec,
    TenantStatus,
    TenantUsage,
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
    "TASKS",
    "VERSION",
    "ApiError",
    "BorrowedPod",
    "BudgetPeriod",
    "Capacity",
    "ClusterPhase",
    "Condition",
    "ConditionStatus",
    "ContentBlock",
    "ErrorBody",
    "InputError",
    "InputSpec",
    "LocalObjectReference",
    "Message",
    "ModelCache",
    "ModelClusterSpec",
    "ModelClusterStatus",
    "Payload",
    "PayloadTooLarge",
    "Rollout",
    "RunRequest",
    "SecretKeySelector",
    "TaskInfo",
    "Tenant",
    "TenantBudget",
    "TenantQuotas",
    "TenantSpec",
    "TenantStatus",
    "TenantUsage",
    "error_body",
    "normalize",
    "parse_run_request",
    "task_info",
    "task_names",
]
