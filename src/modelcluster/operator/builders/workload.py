"""What one ModelCluster asks for, resolved: the input of every builder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelcluster.api import API_VERSION, KIND
from modelcluster.catalog import Placement


@dataclass(frozen=True)
class Owner:
    """The ModelCluster object that owns the children."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """An ownerReference: garbage collection deletes the children with the ModelCluster."""
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class PodOptions:
    """Operator-wide settings of model pods (not part of the ModelCluster spec)."""

    port: int = 8000
    cache_dir: str = "/models/cache"
    request_timeout_seconds: int = 300  # the runtime's longest request, also how long its drain waits for them
    pre_stop_sleep_seconds: int = 10  # endpoint removal reaches routers while the runtime still serves
    drain_delay_seconds: int = 5  # after SIGTERM the runtime serves this long more (SIGTERM may come with no preStop)
    termination_margin_seconds: int = 15  # for the process to exit once its last request is done
    startup_timeout_seconds: int = 1800
    gpu_node_label: str = "nvidia.com/gpu.present"
    gpu_resource: str = "nvidia.com/gpu"
    # Set by NVIDIA GPU feature discovery: each device's memory in MiB, and its model.
    gpu_memory_label: str = "nvidia.com/gpu.memory"
    gpu_product_label: str = "nvidia.com/gpu.product"
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = 10001

    @property
    def termination_grace_seconds(self) -> int:
        """The pod's grace period: the preStop sleep, the runtime's drain delay, its longest request, a margin."""
        return (
            self.pre_stop_sleep_seconds
            + self.drain_delay_seconds
            + self.request_timeout_seconds
            + self.termination_margin_seconds
        )


@dataclass(frozen=True)
class Workload:
    """A ModelCluster resolved against the catalog."""

    owner: Owner
    placement: Placement
    #: SHA-256 of the cluster's pod credential (:mod:`modelcluster.api.pod_auth`): the pods answer only to it.
    credential_sha256: str | None = None

    @property
    def name(self) -> str:
        return self.owner.name

    @property
    def namespace(self) -> str:
        return self.owner.namespace
