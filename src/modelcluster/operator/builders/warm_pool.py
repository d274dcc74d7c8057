"""The warm pool, pure: what a pool is, its standby pods, and every decision about them.

A pool holds ``size`` standby pods of one (family, tier) in a namespace: the family's runtime image (or the pool's
own), the tier's resources, ``STANDBY_FAMILY`` instead of a model (``modelcluster.runtime.standby``). Its pods
answer only the operator (their own credential, :func:`modelcluster.api.warm_pool.standby_subject`), and no
Service selects them until a stopped cluster of that family and tier is woken and the operator claims one
(:func:`claim_patch`). The borrowed pod serves until the cluster's own pod is Ready (:func:`handover_due`), then
it is deleted and drains as any runtime does; the pool refills (:func:`deficit`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelcluster.api.labels import (
    APP_NAME,
    COMPONENT,
    COMPONENT_NAME,
    INSTANCE,
    MANAGED_BY,
    MANAGER,
    MODEL,
    MODEL_ID_ANNOTATION,
    NAME,
    PART_OF,
    PART_OF_NAME,
    TASK,
)
from modelcluster.api.modelcluster import WAKE_ANNOTATION
from modelcluster.api.naming import model_label_value
from modelcluster.api.tasks import tasks_of_family
from modelcluster.api.warm_pool import (
    BORROWED_BY_LABEL,
    CLAIMED,
    CLAIMED_AT_ANNOTATION,
    CLAIMED_FOR_WAKE_ANNOTATION,
    NONCE_ANNOTATION,
    POOL_LABEL,
    STANDBY,
    STANDBY_APP_NAME,
    STANDBY_PATH,
    STATE_LABEL,
    pool_name,
)
from modelcluster.catalog import Catalog, Placement, Tier
from modelcluster.kube.objects import metadata_of, rfc3339
from modelcluster.operator.builders.pod import CONTAINER, PORT_NAME, build_pod_template
from modelcluster.operator.builders.replicas import woken_at
from modelcluster.operator.builders.standby_status import leaving, own_pods, state_of
from modelcluster.operator.builders.workload import Owner, PodOptions, Workload

#: A wake older than this gets no standby: the cluster's own pod is near, or the wake went unanswered.
CLAIM_WINDOW = timedelta(seconds=120)
_SPEC = re.compile(r"^(?P<family>[a-z0-9-]+)/(?P<tier>[a-z0-9-]+)=(?P<size>\d+)(?:@(?P<image>\S+))?$")
MAX_POOL_SIZE = 64


@dataclass(frozen=True)
class PoolSpec:
    """One pool as configured: ``FAMILY/TIER=SIZE`` with an optional ``@IMAGE`` (default: the family's)."""

    family: str
    tier: str
    size: int
    image: str | None = None

    @property
    def name(self) -> str:
        return pool_name(self.family, self.tier)


def parse_pool(text: str) -> PoolSpec:
    """``FAMILY/TIER=SIZE[@IMAGE]``; ValueError with the reason for anything else."""
    found = _SPEC.match(text.strip())
    if found is None:
        raise ValueError(f"{text!r}: a pool is FAMILY/TIER=SIZE, optionally @IMAGE (e.g. text/micro=1)")
    size = int(found["size"])
    if size > MAX_POOL_SIZE:
        raise ValueError(f"{text!r}: at most {MAX_POOL_SIZE} standbys per pool")
    return PoolSpec(family=found["family"], tier=found["tier"], size=size, image=found["image"])


@dataclass(frozen=True)
class Pool:
    """A pool resolved against the catalog: the image and the tier its standbys run."""

    family: str
    tier: Tier
    size: int
    image: str

    @property
    def name(self) -> str:
        return pool_name(self.family, self.tier.name)


def resolve_pools(specs: Sequence[PoolSpec], catalog: Catalog) -> tuple[Pool, ...]:
    """The pools of ``specs`` (ValueError for a family or tier the catalog lacks, or a pool named twice)."""
    pools: dict[str, Pool] = {}
    tiers = {tier.name: tier for tier in catalog.tiers}
    for spec in specs:
        family = catalog.families.get(spec.family)
        if family is None:
            raise ValueError(f"pool {spec.name}: no family {spec.family!r} in the catalog")
        if spec.tier not in tiers:
            raise ValueError(f"pool {spec.name}: no tier {spec.tier!r} in the catalog")
        if spec.name in pools:
            raise ValueError(f"pool {spec.name} is given twice")
        pools[spec.name] = Pool(spec.family, tiers[spec.tier], spec.size, spec.image or family.image)
    return tuple(pools.values())


def pool_for(placement: Placement, pools: Sequence[Pool]) -> Pool | None:
    """The pool a cluster placed at ``placement`` may borrow from: same family, tier and image, no hub token
    (a standby holds no Secret)."""
    if placement.token_secret is not None:
        return None
    for pool in pools:
        if (pool.family, pool.tier.name, pool.image) == (placement.family, placement.tier.name, placement.image):
            return pool
    return None


def standby_pod_name(pool: Pool, suffix: str) -> str:
    return f"standby-{pool.name}-{suffix}"[:63].rstrip("-")


def standby_labels(pool: Pool) -> dict[str, str]:
    return {
        NAME: STANDBY_APP_NAME,
        COMPONENT: COMPONENT_NAME,
        MANAGED_BY: MANAGER,
        PART_OF: PART_OF_NAME,
        POOL_LABEL: pool.name,
        STATE_LABEL: STANDBY,
    }


def _standby_env(env: list[dict[str, Any]], family: str) -> list[dict[str, Any]]:
    kept = [entry for entry in env if entry["name"] not in ("MODEL_ID", "TASK")]
    return [{"name": "STANDBY_FAMILY", "value": family}, *kept]


def build_standby_pod(
    pool: Pool, namespace: str, name: str, nonce: str, verifier: str | None, options: PodOptions
) -> dict[str, Any]:
    """A standby pod of ``pool``: a model pod of the tier without a model, probed on ``/standby`` until claimed.

    The startup probe waits for the warm-up (``/standby`` 200), readiness stays on ``/health`` (503 until a claim
    has loaded a model, so a waiting standby is never Ready), liveness checks the port only (a claimed standby
    answers ``/standby`` 503 by design).
    """
    placement = Placement(
        model_id="", task=tasks_of_family(pool.family)[0], family=pool.family, image=pool.image, tier=pool.tier,
        known=False,
    )  # fmt: skip
    workload = Workload(owner=Owner(name=name, namespace=namespace, uid=""), placement=placement,
                        credential_sha256=verifier)  # fmt: skip
    template = build_pod_template(workload, standby_labels(pool), options)
    spec = template["spec"]
    container = spec["containers"][0]
    container["env"] = _standby_env(container["env"], pool.family)
    container["startupProbe"]["httpGet"]["path"] = STANDBY_PATH
    container["livenessProbe"] = {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 20, "failureThreshold": 3}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": standby_labels(pool),
            "annotations": {NONCE_ANNOTATION: nonce, "kubectl.kubernetes.io/default-container": CONTAINER},
        },
        "spec": spec,
    }


# --- pods, as the watch gives them ------------------------------------------------------------------------------


def borrowed_by(pod: Mapping[str, Any]) -> str | None:
    return (metadata_of(pod).get("labels") or {}).get(BORROWED_BY_LABEL) if state_of(pod) == CLAIMED else None


def _container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def broken(pod: Mapping[str, Any]) -> bool:
    """A standby that cannot be trusted as warm any more: its process ended once (a failed load ends it)."""
    container = _container(pod)
    return int(container.get("restartCount") or 0) > 0 or "terminated" in (container.get("state") or {})


def ready(pod: Mapping[str, Any]) -> bool:
    if metadata_of(pod).get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def waiting(pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The standbys of a pool that may be claimed, best first: warm (started) ones, then the oldest."""
    found = [pod for pod in pods if state_of(pod) == STANDBY and not leaving(pod) and not broken(pod)]
    found = [pod for pod in found if (pod.get("status") or {}).get("podIP")]
    return sorted(
        found,
        key=lambda pod: (not _container(pod).get("started"), str(metadata_of(pod).get("creationTimestamp") or "")),
    )


def deficit(pool: Pool, pods: Sequence[Mapping[str, Any]]) -> int:
    """How many standbys to create: the size less the live pods of the pool, waiting (warm or not) or borrowed.

    A borrowed pod keeps its place until it leaves, so the refill never competes with the woken cluster's own pod
    for the tier's GPUs: the pool refills once the hand-over is done.
    """
    live = [pod for pod in pods if state_of(pod) in (STANDBY, CLAIMED) and not leaving(pod) and not broken(pod)]
    return max(0, pool.size - len(live))


def to_delete(pod: Mapping[str, Any]) -> bool:
    """A pool pod to delete whatever else holds: it ended or restarted (standby or borrowed)."""
    return not metadata_of(pod).get("deletionTimestamp") and (leaving(pod) or broken(pod))


def handover_due(cluster_pods: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a borrowed standby may leave: one of the cluster's own pods is Ready."""
    return any(ready(pod) for pod in own_pods(cluster_pods))


def wake_to_claim(
    cluster: Mapping[str, Any], cluster_pods: Sequence[Mapping[str, Any]], claimed: set[str], now: datetime
) -> str | None:
    """The wake (annotation value) a standby should answer for ``cluster``, or None.

    A wake gets one claim: it must be recent (:data:`CLAIM_WINDOW`), not claimed before, and the cluster must have
    no Ready pod of its own and no borrowed one.
    """
    metadata = metadata_of(cluster)
    stamp = (metadata.get("annotations") or {}).get(WAKE_ANNOTATION)
    woken = woken_at(metadata)
    if not stamp or woken is None or stamp in claimed or metadata.get("deletionTimestamp"):
        return None
    if now - woken > CLAIM_WINDOW:
        return None
    if handover_due(cluster_pods) or any(state_of(pod) == CLAIMED and not leaving(pod) for pod in cluster_pods):
        return None
    return str(stamp)


def claim_patch(cluster: str, model_id: str, task: str, wake: str, now: datetime) -> dict[str, Any]:
    """The merge patch that moves a standby out of its pool into ``cluster``'s selector (its Service lists it)."""
    return {
        "metadata": {
            "labels": {
                NAME: APP_NAME,
                INSTANCE: cluster,
                STATE_LABEL: CLAIMED,
                BORROWED_BY_LABEL: cluster,
                MODEL: model_label_value(model_id),
                TASK: task,
            },
            "annotations": {
                CLAIMED_FOR_WAKE_ANNOTATION: wake,
                CLAIMED_AT_ANNOTATION: rfc3339(now),
                MODEL_ID_ANNOTATION: model_id,
            },
        }
    }
