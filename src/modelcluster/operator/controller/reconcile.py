"""Converge one ModelCluster: apply the children that need it, then derive and write its status.

Level-based: the inputs are the ModelCluster and its children as the store has them now, never
what changed. A child is applied only when it is missing, its desired body changed, or another
writer changed fields the operator owns (:mod:`.children`); the status is written only when it
differs from the stored one (or, while the store has not caught up with the operator's last status
write, from that write: :mod:`.status_memory`). A converged cluster therefore costs no API request at all.

A Deployment is created with its replica count in the one apply that creates it; until the autoscaler's
first forced apply takes the count over, later applies of the Deployment carry the live count under a
``resourceVersion`` precondition (:func:`..builders.replicas.carried_replicas`), read again once on a 409.

The operator never writes an object it did not create: a child the store does not have as the
cluster's own is read by name before its first apply, and one that someone else made is left
alone (the cluster fails with ``NameConflict``, :mod:`..builders.ownership`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelcluster.api import ModelClusterStatus
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.catalog import Catalog
from modelcluster.kube.client import ClusterApi, KubeError
from modelcluster.kube.objects import metadata_of, newer
from modelcluster.operator.builders.children import (
    ApplyReason,
    apply_reason,
    owned_fields,
    spec_hash,
    with_spec_hash,
)
from modelcluster.operator.builders.deployment import build_deployment
from modelcluster.operator.builders.events import build_event
from modelcluster.operator.builders.model_cache import build_cache_claim
from modelcluster.operator.builders.ownership import name_conflict, name_conflicts
from modelcluster.operator.builders.plan import Plan, plan
from modelcluster.operator.builders.replicas import carried_replicas, with_carried
from modelcluster.operator.builders.service import build_service
from modelcluster.operator.builders.status import NAME_CONFLICT, Derived, Observation, Problem, derive_status
from modelcluster.operator.builders.workload import Owner, PodOptions, Workload
from modelcluster.operator.config import FIELD_MANAGER
from modelcluster.operator.controller.status_memory import WrittenStatus, as_written, caught_up, written_status
from modelcluster.operator.controller.store import slim_deployment, slim_service

#: Status fields other writers own (the gateway and the autoscaler): never applied here.
#: Written by the autoscaler under its own field manager.
FOREIGN_STATUS_FIELDS = frozenset({"queueDepth", "lastRequestTime", "lastScaleTime"})
#: Answers of the apiserver that no retry can change: the child object itself is invalid.
REJECTED_STATUSES = frozenset({400, 422})
#: The apiserver's answer to an apply whose ``resourceVersion`` precondition no longer holds.
CONFLICT_STATUS = 409
CHILD_REJECTED = "ChildRejected"

Body = dict[str, Any]
#: (namespace, name, kind) of a child.
ChildKey = tuple[str, str, str]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    """What the apiserver answered to the operator's last apply of a child."""

    spec_hash: str | None
    fields: str | None
    body: Body


@dataclass
class Memory:
    """The operator's last applies, by child: drift is judged against them (empty after a restart)."""

    applied: dict[ChildKey, Applied] = field(default_factory=dict)
    #: Clusters whose children the apiserver rejected: the cluster's uid and generation, and the apiserver's
    #: message (the uid, so that a cluster deleted and made again under its name is never taken for the old one).
    rejected: dict[tuple[str, str], tuple[str, int, str]] = field(default_factory=dict)
    #: Clusters blocked by an object they did not create: the message last posted as an Event.
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)
    #: The last status write of each cluster, until the store shows it (:mod:`.status_memory`).
    written: dict[tuple[str, str], WrittenStatus] = field(default_factory=dict)

    def remember(self, key: ChildKey, body: Body, applied_hash: str | None = None) -> None:
        """``body`` is the child as the apiserver has it; ``applied_hash`` the hash just applied, if any."""
        digest = applied_hash if applied_hash is not None else spec_hash(body)
        kept = slim_deployment(body) if key[2] == "Deployment" else slim_service(body)
        self.applied[key] = Applied(digest, owned_fields(body, FIELD_MANAGER), kept)

    def forget(self, key: ChildKey) -> None:
        self.applied.pop(key, None)

    def forget_cluster(self, namespace: str, name: str) -> None:
        for key in [k for k in self.applied if k[0] == namespace and k[1] == name]:
            del self.applied[key]
        self.rejected.pop((namespace, name), None)
        self.conflicts.pop((namespace, name), None)
        self.written.pop((namespace, name), None)

    def status_view(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """``body`` with its status as last written while the store lags behind that write (forgotten once not)."""
        key = (str(metadata_of(body).get("namespace", "")), str(metadata_of(body).get("name", "")))
        written = self.written.get(key)
        if written is None:
            return body
        if caught_up(body, written):
            del self.written[key]
            return body
        return as_written(body, written, FOREIGN_STATUS_FIELDS)


@dataclass(frozen=True)
class Seen:
    """A cluster's children as the store has them."""

    deployment: Body | None = None
    service: Body | None = None
    pods: tuple[Body, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What applying the children did: the Deployment to derive from, whether this generation is in place."""

    deployment: Body | None
    in_place: bool
    rejected: Problem | None = None
    #: Objects the cluster did not create stand under its children's names: nothing was applied.
    conflict: Problem | None = None


@dataclass(frozen=True)
class Reconciler:
    """Everything a reconciliation needs besides the object itself."""

    api: ClusterApi
    catalog: Catalog
    pods: PodOptions
    unschedulable_deadline: timedelta
    #: Signs the pods' credentials; None only in tests of other things (the pods then answer anyone).
    credentials: CredentialIssuer | None = None

    def plan(self, body: Mapping[str, Any], now: datetime) -> Plan:
        return plan(body, self.catalog, self.pods, now, self.credentials)

    def _decide(
        self, desired: Body, live: Body | None, kind: str, memory: Memory
    ) -> tuple[ApplyReason | None, Body | None]:
        """Why ``desired`` must be applied (None: it need not be), and the child as it stands."""
        metadata = desired["metadata"]
        child_key = (str(metadata["namespace"]), str(metadata["name"]), kind)
        known = memory.applied.get(child_key)
        if known is not None and known.spec_hash == spec_hash(desired) and not newer(live, known.body):
            return None, known.body  # the store has not caught up with the last apply yet
        reason = apply_reason(live, desired, FIELD_MANAGER, known.fields if known else None)
        if reason is None and live is not None and (known is None or newer(live, known.body)):
            memory.remember(child_key, live)
        return reason, live

    async def _apply(self, desired: Body, kind: str, reason: ApplyReason, memory: Memory) -> Body:
        metadata = desired["metadata"]
        logger.info("%s/%s: applying the %s (%s)", metadata["namespace"], metadata["name"], kind, reason.value)
        return await self.api.apply(desired, FIELD_MANAGER)

    async def apply_children(self, planned: Plan, seen: Seen, memory: Memory) -> Outcome:
        """Server-side apply what needs it: the Service, the cache claim and the Deployment (created with its
        replica count, which the autoscaler's field manager takes over with its first change of it).

        Nothing is applied while an object the cluster did not create stands under a child's name.
        """
        workload = planned.workload
        if workload is None or planned.replicas is None:
            return Outcome(deployment=seen.deployment, in_place=True)
        owner = workload.owner
        # Labelled like the operator's but not this cluster's: known from the store, without a request.
        stored = [
            problem
            for kind, live in (("Service", seen.service), ("Deployment", seen.deployment))
            if (problem := name_conflict(kind, live, owner)) is not None
        ]
        if stored:
            ours = seen.deployment if name_conflict("Deployment", seen.deployment, owner) is None else None
            return Outcome(deployment=ours, in_place=False, conflict=name_conflicts(stored))
        service = with_spec_hash(build_service(workload, self.pods))
        service_reason, _ = self._decide(service, seen.service, "Service", memory)
        desired = with_spec_hash(build_deployment(workload, self.pods))
        reason, current = self._decide(desired, seen.deployment, "Deployment", memory)
        claim = build_cache_claim(workload) if reason is not None else None
        unknown = [
            *([service] if service_reason is not None and seen.service is None else []),
            *([desired] if reason is not None and seen.deployment is None else []),
            # Claims are not watched: read before every apply (that is, with every apply of the Deployment).
            *([claim] if claim is not None else []),
        ]
        conflict = await self._conflicts(unknown, owner)
        if conflict is not None:
            return Outcome(deployment=seen.deployment, in_place=False, conflict=conflict)
        # The Service and the Deployment do not depend on each other: both requests go out at once.
        _, deployment = await asyncio.gather(
            self._apply_service(service, service_reason, memory, workload.namespace),
            self._apply_deployment(desired, reason, current, claim, planned.replicas, workload, memory),
        )
        return Outcome(deployment=deployment, in_place=True)

    async def _conflicts(self, children: list[Body], owner: Owner) -> Problem | None:
        """Read each of ``children`` (desired bodies the store cannot vouch for) by name, all at once: the
        problem of those that exist and are not ``owner``'s, None when every one is missing or ours."""
        if not children:
            return None
        found = await asyncio.gather(
            *(self.api.read(c["kind"], str(c["metadata"]["namespace"]), str(c["metadata"]["name"])) for c in children)
        )
        problems = [
            problem
            for child, live in zip(children, found, strict=True)
            if (problem := name_conflict(str(child["kind"]), live, owner)) is not None
        ]
        return name_conflicts(problems)

    async def _apply_service(
        self, service: Body, reason: ApplyReason | None, memory: Memory, namespace: str
    ) -> Body | None:
        if reason is None:
            return None
        answered = await self._apply(service, "Service", reason, memory)
        memory.remember((namespace, str(service["metadata"]["name"]), "Service"), answered, spec_hash(service))
        return answered

    async def _apply_deployment(
        self,
        desired: Body,
        reason: ApplyReason | None,
        current: Body | None,
        claim: Body | None,
        replicas: int,
        workload: Workload,
        memory: Memory,
    ) -> Body | None:
        if reason is None:
            return current
        if claim is not None:
            # Before the Deployment, so its pods find the claim they mount.
            await self.api.apply(claim, FIELD_MANAGER)
        key = (workload.namespace, workload.name, "Deployment")
        digest = spec_hash(desired)
        if reason is ApplyReason.MISSING:
            # Created with the right count, so a cluster created at zero never starts a pod.
            desired["spec"]["replicas"] = replicas
            answered = await self._apply(desired, "Deployment", reason, memory)
        else:
            answered = await self._apply_over(desired, reason, _newest(current, memory.applied.get(key)), memory)
        memory.remember(key, answered, digest)
        return answered

    async def _apply_over(self, desired: Body, reason: ApplyReason, live: Body | None, memory: Memory) -> Body:
        """Apply the Deployment body over ``live``, carrying the count the operator still owns; on a 409 (the count
        changed meanwhile) read it once and apply again over what was read."""
        carried = carried_replicas(live, FIELD_MANAGER)
        if carried is None:
            return await self._apply(desired, "Deployment", reason, memory)
        try:
            return await self._apply(with_carried(desired, carried), "Deployment", reason, memory)
        except KubeError as error:
            if error.status != CONFLICT_STATUS:
                raise
            conflict = error
        metadata = desired["metadata"]
        logger.info("%s/%s: the Deployment changed meanwhile; read again", metadata["namespace"], metadata["name"])
        fresh = await self.api.read("Deployment", str(metadata["namespace"]), str(metadata["name"]))
        if fresh is None:
            raise conflict  # gone meanwhile: its deletion event brings it back, created with its count
        carried = carried_replicas(fresh, FIELD_MANAGER)
        retried = desired if carried is None else with_carried(desired, carried)
        return await self._apply(retried, "Deployment", reason, memory)

    def observe(self, planned: Plan, now: datetime, outcome: Outcome, pods: tuple[Body, ...]) -> Derived:
        """Derive the status from the children."""
        observation = Observation(
            generation=planned.generation,
            now=now,
            task=planned.workload.placement.task if planned.workload else None,
            # The name may be someone else's Service: not advertised while it is.
            endpoint=planned.endpoint if outcome.conflict is None else None,
            selector=planned.selector,
            target_replicas=_deployment_replicas(outcome.deployment, planned.replicas),
            deployment=outcome.deployment,
            pods=pods if planned.workload is not None else (),
            spec_problem=planned.problem or outcome.rejected or outcome.conflict,
            previous=planned.previous,
            in_place=outcome.in_place,
            pod_port=self.pods.port,
        )
        return derive_status(observation, self.unschedulable_deadline)

    async def write_status(self, planned: Plan, derived: Derived) -> Body | None:
        """Apply the derived status when it differs from the stored one; the apiserver's answer, None if not written."""
        new = owned_status(derived.status)
        old = owned_status(planned.previous) if planned.previous is not None else None
        if new == old:
            return None
        return await self.api.apply_cluster_status(planned.owner.namespace, planned.owner.name, new, FIELD_MANAGER)

    async def reconcile(self, body: Mapping[str, Any], seen: Seen, memory: Memory) -> Derived:
        """Converge ``body``: the children that need it first, then the status."""
        now = datetime.now(UTC)
        body = memory.status_view(body)
        planned = self.plan(body, now)
        key = (planned.owner.namespace, planned.owner.name)
        rejected = memory.rejected.get(key)
        if rejected is not None and rejected[:2] == (planned.owner.uid, planned.generation):
            # The same spec would be rejected again: no retry (and no new Event) until the spec changes.
            outcome = Outcome(seen.deployment, in_place=False, rejected=Problem(CHILD_REJECTED, rejected[2]))
        else:
            try:
                outcome = await self.apply_children(planned, seen, memory)
                memory.rejected.pop(key, None)
                await self._conflicted(body, planned, outcome.conflict, memory, now)
            except KubeError as error:
                if error.status not in REJECTED_STATUSES:
                    raise
                message = f"the apiserver rejected a child object: {error}"
                logger.warning("%s/%s: %s", key[0], key[1], message)
                memory.rejected[key] = (planned.owner.uid, planned.generation, message)
                outcome = Outcome(seen.deployment, in_place=False, rejected=Problem(CHILD_REJECTED, message))
                await self._warn(body, CHILD_REJECTED, message, now)
        derived = self.observe(planned, now, outcome, seen.pods)
        answered = await self.write_status(planned, derived)
        if answered is not None:
            written = written_status(body, answered, owned_status(derived.status))
            if written is None:
                memory.written.pop(key, None)
            else:
                memory.written[key] = written
        return derived

    async def _conflicted(
        self, body: Mapping[str, Any], planned: Plan, conflict: Problem | None, memory: Memory, now: datetime
    ) -> None:
        """A Warning Event when a cluster first meets a name conflict (once per message, not per recheck)."""
        key = (planned.owner.namespace, planned.owner.name)
        if conflict is None:
            memory.conflicts.pop(key, None)
            return
        previous = planned.previous
        reported = previous is not None and previous.reason == NAME_CONFLICT and previous.message == conflict.message
        if memory.conflicts.get(key) == conflict.message or reported:
            return
        memory.conflicts[key] = conflict.message
        logger.warning("%s/%s: %s: nothing applied", key[0], key[1], conflict.message)
        await self._warn(body, NAME_CONFLICT, conflict.message, now)

    async def _warn(self, body: Mapping[str, Any], reason: str, message: str, now: datetime) -> None:
        try:
            await self.api.post_event(build_event(body, reason, message, now, warning=True))
        except KubeError as error:
            logger.warning("event %s not recorded: %s", reason, error)


def _newest(live: Body | None, known: Applied | None) -> Body | None:
    """The later of the store's copy of a child and the operator's own last answer for it."""
    if known is None or (live is not None and newer(live, known.body)):
        return live
    return known.body


def _deployment_replicas(deployment: Mapping[str, Any] | None, planned: int | None) -> int | None:
    """The replica count in force: the Deployment's (the autoscaler's), or the planned one before it exists."""
    if deployment is not None:
        replicas = (deployment.get("spec") or {}).get("replicas")
        if isinstance(replicas, int):
            return replicas
    return planned


def owned_status(status: ModelClusterStatus) -> dict[str, Any]:
    """The status fields the operator writes, in their JSON form."""
    return {key: value for key, value in status.to_k8s().items() if key not in FOREIGN_STATUS_FIELDS}
