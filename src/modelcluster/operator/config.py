"""Operator-wide configuration, set from the command line or the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from modelcluster.api import field_managers
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.api.tenant_policy import TenantPolicyConfig
from modelcluster.operator.autoscaling.config import AutoscalerConfig
from modelcluster.operator.builders.warm_pool import PoolSpec
from modelcluster.operator.builders.workload import PodOptions

FIELD_MANAGER = field_managers.OPERATOR
#: Lease retries wait the retry period plus up to this fraction more, so standbys do not move in step.
LEASE_RETRY_JITTER = 0.2


@dataclass(frozen=True)
class LeaderElectionConfig:
    """A coordination.k8s.io Lease held by the one active operator (client-go's default timings)."""

    enabled: bool = True
    namespace: str = "modelcluster-system"
    name: str = "modelcluster-operator"
    identity: str = "modelcluster-operator"
    lease_duration_seconds: int = 15
    renew_deadline_seconds: int = 10
    retry_period_seconds: float = 2.0

    def __post_init__(self) -> None:
        # client-go's rules: the holder must give up before a standby may take over, and get
        # more than one try at renewing before it has to.
        if not self.lease_duration_seconds > self.renew_deadline_seconds:
            raise ValueError("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline_seconds > self.retry_period_seconds * (1 + LEASE_RETRY_JITTER) > 0:
            raise ValueError("the renew deadline must be longer than the retry period (with its jitter)")


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    catalog_paths: tuple[Path, ...] = ()
    metrics_port: int = 8082
    health_port: int = 8081
    unschedulable_deadline: timedelta = timedelta(minutes=5)
    workers: int = 256
    leader_election: LeaderElectionConfig = field(default_factory=LeaderElectionConfig)
    pods: PodOptions = field(default_factory=PodOptions)
    autoscaler: AutoscalerConfig | None = field(default_factory=AutoscalerConfig)  # None: replicas stay as created
    #: Signs the model pods' credentials (the operator's pods answer only to it and the gateway).
    credentials: CredentialIssuer | None = None
    #: The NetworkPolicy every tenant namespace gets (None: the operator applies none).
    tenant_policy: TenantPolicyConfig | None = None
    #: Whether Tenants are reconciled (needs the cluster-wide namespace and ResourceQuota rules).
    tenants: bool = True
    #: Namespaces never given to a Tenant besides the system ones: the operator's and the gateway's.
    reserved_namespaces: tuple[str, ...] = ()
    #: Warm pools (per family and tier) kept filled in each of ``pool_namespaces`` (none: no pool).
    pools: tuple[PoolSpec, ...] = ()
    pool_namespaces: tuple[str, ...] = ()

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces
