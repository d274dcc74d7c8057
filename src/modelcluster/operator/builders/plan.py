"""Decide what a ModelCluster object needs: a workload to run, or a problem to report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from modelcluster.api import ModelClusterSpec, ModelClusterStatus
from modelcluster.api.labels import selector_string
from modelcluster.api.naming import is_dns1035_label
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.catalog import Catalog, CatalogError, resolve, with_spec
from modelcluster.kube.objects import metadata_of
from modelcluster.operator.builders.replicas import desired_replicas, woken_at
from modelcluster.operator.builders.service import service_endpoint
from modelcluster.operator.builders.status import Problem
from modelcluster.operator.builders.workload import Owner, PodOptions, Workload


@dataclass(frozen=True)
class Plan:
    """A ModelCluster parsed and resolved: either ``workload`` or ``problem`` is set."""

    owner: Owner
    generation: int
    previous: ModelClusterStatus | None
    spec: ModelClusterSpec | None = None
    workload: Workload | None = None
    replicas: int | None = None
    endpoint: str | None = None
    selector: str | None = None
    problem: Problem | None = None


def _previous_status(body: Mapping[str, Any]) -> ModelClusterStatus | None:
    try:
        return ModelClusterStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return None


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"spec.{location}: {first['msg']}" if location else first["msg"]


def plan(
    body: Mapping[str, Any],
    catalog: Catalog,
    options: PodOptions,
    now: datetime,
    credentials: CredentialIssuer | None = None,
) -> Plan:
    """What to do for ``body`` (a ModelCluster as the API returns it). Never raises for bad input.

    With ``credentials`` the pods get the verifier of the cluster's credential (they answer only to it).
    """
    metadata = metadata_of(body)
    owner = Owner(
        name=str(metadata.get("name", "")),
        namespace=str(metadata.get("namespace", "")),
        uid=str(metadata.get("uid", "")),
    )
    generation = int(metadata.get("generation") or 0)
    previous = _previous_status(body)
    base = Plan(owner=owner, generation=generation, previous=previous)
    if not is_dns1035_label(owner.name):
        message = f"metadata.name {owner.name!r} must be a DNS-1035 label (lowercase, starts with a letter, <= 63)"
        return _with_problem(base, Problem("InvalidName", message))
    try:
        spec = ModelClusterSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        return _with_problem(base, Problem("InvalidSpec", _first_error(error)))
    woken = woken_at(metadata)
    try:
        placement = with_spec(resolve(catalog, spec.model, spec.task), spec)
    except CatalogError as error:
        return _with_problem(base, Problem(error.reason, error.message))
    return Plan(
        owner=owner,
        generation=generation,
        previous=previous,
        spec=spec,
        workload=Workload(owner=owner, placement=placement, credential_sha256=_verifier(credentials, owner)),
        replicas=desired_replicas(spec, previous, woken, now),
        endpoint=service_endpoint(owner.name, owner.namespace, options.port),
        selector=selector_string(owner.name),
    )


def _verifier(credentials: CredentialIssuer | None, owner: Owner) -> str | None:
    if credentials is None or not owner.uid:
        return None
    return credentials.verifier(owner.namespace, owner.name, owner.uid)


def _with_problem(base: Plan, problem: Problem) -> Plan:
    return Plan(owner=base.owner, generation=base.generation, previous=base.previous, problem=problem)
