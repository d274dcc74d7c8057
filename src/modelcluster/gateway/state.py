"""The gateway's state and the steps every route shares: tenants, model ids, tasks, clusters, bodies."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web

from modelcluster.api import InputError, PayloadTooLarge
from modelcluster.api.errors import ClientTimeout, Conflict, NotFound, QuotaExceeded
from modelcluster.api.json_limits import JsonLimits, check_json_limits
from modelcluster.api.modelcluster import is_model_id
from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.catalog import Catalog, CatalogError, resolve
from modelcluster.gateway.clusters import ClusterBody, build_cluster, find_cluster
from modelcluster.gateway.demand import Demand
from modelcluster.gateway.endpoints import EndpointTable, borrowed_endpoint
from modelcluster.gateway.kube_answers import answered
from modelcluster.gateway.metrics import GatewayMetrics
from modelcluster.gateway.providers.service import ProviderService
from modelcluster.gateway.proxy import Proxy
from modelcluster.gateway.quotas import quota_refusal
from modelcluster.gateway.request_keys import TENANT
from modelcluster.gateway.router import Router
from modelcluster.gateway.settings import GatewaySettings
from modelcluster.gateway.tenant_defaults import with_tenant_defaults
from modelcluster.gateway.tenants import TenantTable
from modelcluster.kube.client import Kube
from modelcluster.kube.index import ClusterTable
from modelcluster.kube.objects import ClusterKey, metadata_of

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """The cluster a request is about: its key in the caller's namespace, the model id and its task."""

    key: ClusterKey
    model_id: str
    task: str | None
    cluster: dict[str, Any] | None


@dataclass
class Gateway:
    settings: GatewaySettings
    catalog: Catalog
    kube: Kube
    #: Signs the model pods' credentials; None only in tests of other things (pods that check refuse then).
    credentials: CredentialIssuer | None = None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    endpoints: EndpointTable = field(default_factory=EndpointTable)
    tenants: TenantTable = field(default_factory=TenantTable)
    clusters: ClusterTable = field(init=False)
    demand: Demand = field(init=False)
    router: Router = field(init=False)
    proxy: Proxy = field(init=False)
    json_limits: JsonLimits = field(init=False)
    providers: ProviderService = field(init=False)
    _creating: dict[ClusterKey, asyncio.Task[None]] = field(default_factory=dict)
    #: One lock per namespace over a cluster write and the quota check before it (see :meth:`cluster_writes`).
    _writes: weakref.WeakValueDictionary[str, asyncio.Lock] = field(default_factory=weakref.WeakValueDictionary)
    #: The pod credential header of each cluster, by the uid it was derived for (an HMAC per cluster, not per
    #: request); dropped when the cluster changes.
    _credentials: dict[ClusterKey, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.clusters = ClusterTable()
        # Endpoints route only from the slices of the Service the operator made for the cluster (by uid).
        self.endpoints.cluster_uid = self._cluster_uid
        # A warm standby the operator lent the cluster is probed before its slice lists it.
        self.endpoints.borrowed = lambda key: borrowed_endpoint(self.clusters.get(key))
        self.demand = Demand(self.metrics, exists=lambda key: self.clusters.get(key) is not None)
        self.router = Router(self.settings, self.kube, self.clusters, self.endpoints, self.demand, self.metrics)
        # New or lost pods, and a cluster that changes (fails, is deleted), wake its held requests to look again.
        self.endpoints.on_change = self.router.changed
        self.clusters.on_change = self._cluster_changed
        s = self.settings
        self.json_limits = s.json_limits()
        self.providers = ProviderService(s.providers, self.metrics.registry)
        self.proxy = Proxy(
            self.router,
            self.metrics,
            s.connect_timeout_s,
            s.upstream_timeout_s,
            s.connect_attempts,
            max_answer_bytes=s.max_answer_bytes,
            credential=self._credential,
        )

    def _cluster_uid(self, key: ClusterKey) -> str | None:
        uid = metadata_of(self.clusters.get(key) or {}).get("uid")
        return str(uid) if uid else None

    def _credential(self, key: ClusterKey) -> dict[str, str]:
        """The header presenting the pod credential of cluster ``key`` (none without an issuer or a cluster)."""
        uid = self._cluster_uid(key)
        if self.credentials is None or uid is None:
            return {}
        known = self._credentials.get(key)
        if known is not None and known[0] == uid:
            return known[1]
        headers = self.credentials.headers(key[0], key[1], uid)
        self._credentials[key] = (uid, headers)
        return headers

    def _cluster_changed(self, key: ClusterKey) -> None:
        self._credentials.pop(key, None)
        self.endpoints.refresh(key)  # a new or recreated cluster (another uid) decides its Service's slices again
        self.router.changed(key)
        if self.clusters.get(key) is None:
            # Deleted: its per-model series go too, so they are bounded by the clusters that exist.
            self.demand.forget(key)
            self.router.forget(key)

    def target(self, request: web.Request, model_id: str) -> Target:
        """The caller's cluster for ``model_id`` and the task it serves (from the cluster, else the catalog).

        409 when the cluster named for ``model_id`` serves another model (see :func:`find_cluster`).
        """
        if not is_model_id(model_id):
            raise InputError(f"invalid model id {model_id!r}: expected org/name")
        model_id = self.canonical_id(model_id)
        key, cluster = find_cluster(str(request[TENANT]), model_id, self.clusters.get)
        task: str | None = None
        if cluster is not None:
            task = (cluster.get("status") or {}).get("task") or (cluster.get("spec") or {}).get("task")
        if task is None:
            known = self.catalog.model(model_id)
            task = known.task if known is not None else None
        return Target(key=key, model_id=model_id, task=task, cluster=cluster)

    def canonical_id(self, model_id: str) -> str:
        """The catalog's spelling of ``model_id`` (it matches ids case-insensitively), so case variants of one
        model reach one cluster; an id the catalog does not know is kept as sent."""
        known = self.catalog.model(model_id)
        return known.id if known is not None else model_id

    def _gpus_per_replica(self, spec: Mapping[str, Any]) -> int:
        try:
            return resolve(self.catalog, str(spec.get("model") or ""), spec.get("task")).tier.gpus
        except CatalogError:
            return 0  # the operator fails such a cluster; it never runs a pod

    def cluster_writes(self, namespace: str) -> asyncio.Lock:
        """The lock a cluster write in ``namespace`` holds from its quota check to the table holding its result.

        The replicas quota is the gateway's alone (no ResourceQuota counts ``capacity.max``): without it, writes
        racing each other would each be checked against the clusters before any of them.
        """
        lock = self._writes.get(namespace)
        if lock is None:
            lock = self._writes[namespace] = asyncio.Lock()
        return lock

    def check_quota(self, key: ClusterKey, spec: Mapping[str, Any]) -> None:
        """403 when cluster ``key`` with ``spec`` would take its tenant past a quota (see :mod:`.quotas`)."""
        namespace, name = key
        refusal = quota_refusal(
            self.tenants.for_namespace(namespace),
            self.clusters.in_namespace(namespace),
            name,
            spec,
            self._gpus_per_replica,
        )
        if refusal is not None:
            raise QuotaExceeded(refusal)

    def task_of(self, target: Target, requested: str | None = None) -> str:
        """The task a new cluster for ``target`` would serve; 4xx when there is none."""
        try:
            return resolve(self.catalog, target.model_id, requested).task
        except CatalogError as error:
            if error.reason == "UnknownModel":
                raise NotFound(
                    f"model {target.model_id} is not in the catalog; create its cluster with "
                    f"PUT /models/v2/{target.model_id} and a `task`"
                ) from error
            raise InputError(error.message) from error

    async def create(self, target: Target, body: ClusterBody) -> dict[str, Any]:
        """Create the cluster of ``target`` (409 when it exists, under its legacy name too)."""
        if target.cluster is not None:
            raise Conflict(f"cluster for {target.model_id} already exists")
        namespace, _ = target.key
        cluster = build_cluster(
            namespace, target.model_id, with_tenant_defaults(body, self.tenants.for_namespace(namespace))
        )
        async with self.cluster_writes(namespace):
            self.check_quota(target.key, cluster["spec"])
            created = await answered(
                self.kube.create_cluster(cluster),
                f"cluster for {target.model_id}",
                caller_body=True,
            )
            self.clusters.put(created)
        return created

    async def ensure(self, target: Target) -> None:
        """Create the cluster with defaults when the model has none yet (the hosted API is serverless).

        Concurrent first requests share one create (single flight).
        """
        if target.cluster is not None:
            return
        task = self._creating.get(target.key)
        if task is None:
            task = asyncio.create_task(self._create_default(target), name=f"create {target.key}")
            self._creating[target.key] = task
            task.add_done_callback(lambda _: self._creating.pop(target.key, None))
        await asyncio.shield(task)

    async def _create_default(self, target: Target) -> None:
        try:
            await self.create(target, ClusterBody())
        except Conflict:
            return
        logger.info("created a cluster for %s in %s", target.model_id, target.key[0])

    async def read_body(self, request: web.Request) -> bytes:
        """The request body: 413 past the configured size, 408 when it takes longer than the body deadline."""
        content = request.content
        if content.is_eof() and request.content_length is not None:
            # All of it arrived with the head (a small body): taken as it is, no deadline to arm.
            if request.content_length > self.settings.max_body_bytes:
                raise PayloadTooLarge(f"request body is larger than {self.settings.max_body_bytes} bytes")
            return content.read_nowait()
        deadline = self.settings.client_body_timeout_s
        try:
            async with asyncio.timeout(deadline):
                return await self._read_body(request)
        except TimeoutError:
            raise ClientTimeout(f"the request body did not arrive within {deadline:g}s") from None

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def parse(self, raw: bytes, parse: Callable[[bytes], T]) -> T:
        """``parse(raw)`` once the body's structure is within the limits (413 otherwise, before any decoding).

        A body larger than ``offload_parse_bytes`` is measured and parsed in a worker thread, so the event loop
        answers other requests meanwhile.
        """
        limits = self.json_limits

        def measured_then_parsed() -> T:
            check_json_limits(raw, limits)
            return parse(raw)

        if len(raw) > self.settings.offload_parse_bytes:
            return await asyncio.to_thread(measured_then_parsed)
        return measured_then_parsed()
