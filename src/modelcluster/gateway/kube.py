"""The gateway's Kubernetes I/O: ModelCluster CRUD in tenant namespaces, and the watched tables.

Failures become the API's errors: the apiserver's validation message answers 422,
a missing object 404, an existing one 409.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client

from modelcluster.api import GROUP, PLURAL, VERSION
from modelcluster.api.errors import ApiError, Conflict, InputError, NotFound, Unavailable
from modelcluster.gateway.endpoints import ClusterKey
from modelcluster.operator.kube import Kube, KubeError

Body = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
#: The client's stubs omit ``_content_type``; it makes the PATCH a JSON merge patch.
MERGE_OPTIONS: dict[str, Any] = {"_content_type": MERGE_PATCH}


def api_error(error: KubeError, what: str) -> ApiError:
    """The HTTP API's error for a failed Kubernetes call about ``what``."""
    if error.status == 404:
        return NotFound(f"{what} not found")
    if error.status == 409:
        return Conflict(f"{what} already exists")
    if error.status in (400, 422):
        return InputError(str(error).split(": ", 1)[-1])
    return Unavailable(f"the Kubernetes API is unavailable: {error}")


class GatewayKube(Kube):
    """ModelCluster CRUD plus the list calls the informers follow."""

    def __init__(self, api_client: client.ApiClient) -> None:
        super().__init__(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    async def _cluster_call(self, request: Awaitable[Any], what: str) -> Body:
        try:
            return await self.json(request)
        except KubeError as error:
            raise api_error(error, what) from error

    async def create_cluster(self, body: Body, what: str) -> Body:
        namespace = body["metadata"]["namespace"]
        return await self._cluster_call(
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, _preload_content=False
            ),
            what,
        )

    async def read_cluster(self, namespace: str, name: str, what: str) -> Body:
        return await self._cluster_call(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _preload_content=False),
            what,
        )

    async def patch_cluster(self, namespace: str, name: str, patch: Body, what: str) -> Body:
        return await self._cluster_call(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _preload_content=False, **MERGE_OPTIONS
            ),
            what,
        )

    async def delete_cluster(self, namespace: str, name: str, what: str) -> None:
        await self._cluster_call(
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
            ),
            what,
        )

    def list_all_clusters(self, **kwargs: Any) -> Awaitable[Any]:
        return self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

    def list_all_endpoint_slices(self, **kwargs: Any) -> Awaitable[Any]:
        return self.discovery.list_endpoint_slice_for_all_namespaces(**kwargs)


class ClusterTable:
    """Every ModelCluster by (namespace, name), kept by an informer: the hot path reads it, never the API."""

    def __init__(self, on_change: Callable[[ClusterKey], None] | None = None) -> None:
        self._clusters: dict[ClusterKey, Body] = {}
        self.on_change = on_change

    def get(self, key: ClusterKey) -> Body | None:
        return self._clusters.get(key)

    def in_namespace(self, namespace: str) -> list[Body]:
        return [body for (ns, _), body in sorted(self._clusters.items()) if ns == namespace]

    def put(self, obj: Body) -> None:
        """Record an object the gateway itself just wrote (the watch event follows)."""
        key = _key(obj)
        self._clusters[key] = obj
        self._changed(key)

    def reset(self, items: list[Body]) -> None:
        gone = set(self._clusters)
        self._clusters = {}
        for item in items:
            self.put(item)
        for key in gone - set(self._clusters):
            self._changed(key)

    def event(self, kind: str, obj: Body) -> None:
        if kind == "DELETED":
            key = _key(obj)
            self._clusters.pop(key, None)
            self._changed(key)
        else:
            self.put(obj)

    def _changed(self, key: ClusterKey) -> None:
        if self.on_change is not None:
            self.on_change(key)


def _key(obj: Body) -> ClusterKey:
    metadata = obj.get("metadata") or {}
    return (str(metadata.get("namespace")), str(metadata.get("name")))
