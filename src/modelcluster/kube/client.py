"""The Kubernetes API client of the operator and the gateway (kubernetes_asyncio), in plain JSON.

Every method returns plain JSON dicts and raises :class:`KubeError` on failure, so callers
never handle library-specific exceptions or model classes. The operator applies children and
writes status through it; the gateway creates, reads, patches and deletes ModelClusters; both
list and watch through :mod:`modelcluster.kube.informer`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, cast

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException

from modelcluster.api import GROUP, KIND, PLURAL, VERSION
from modelcluster.api.tenant import TENANT_KIND, TENANT_PLURAL
from modelcluster.kube.objects import Body

APPLY = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
#: The client's stubs omit ``_content_type``; it makes a PATCH a JSON merge patch.
MERGE_OPTIONS: dict[str, Any] = {"_content_type": MERGE_PATCH}
_T = TypeVar("_T")


def _apply_options(field_manager: str) -> dict[str, Any]:
    """Keyword arguments of a forced server-side apply (the client's stubs omit ``_content_type``)."""
    return {"field_manager": field_manager, "force": True, "_content_type": APPLY}


#: Seconds one API request (not a watch) may take to answer.
REQUEST_TIMEOUT_S = 60.0


class KubeError(Exception):
    """A failed API call; ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message

    @property
    def gone(self) -> bool:
        """Whether the object (or its whole namespace) is going away: nothing left to converge."""
        return self.status == 404 or (self.status == 403 and "because it is being terminated" in self.message)

    @property
    def retryable(self) -> bool:
        """Whether trying again later can succeed (not an invalid request)."""
        return self.status not in (400, 404, 422)


class ClusterApi(Protocol):
    """What the reconciler needs from the apiserver."""

    async def apply(self, body: Body, field_manager: str) -> Body: ...

    async def read(self, kind: str, namespace: str, name: str) -> Body | None: ...

    async def apply_cluster_status(self, namespace: str, name: str, status: Body, field_manager: str) -> Body: ...

    async def post_event(self, event: Body) -> None: ...


async def load_client_configuration() -> client.Configuration:
    """The in-cluster service account when running in a pod, else ``$KUBECONFIG`` / ``~/.kube/config``."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException:
        await config.load_kube_config(client_configuration=configuration)
    return configuration


def _status_message(payload: bytes, fallback: str) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, else ``fallback``."""
    try:
        status = json.loads(payload)
    except ValueError:
        return fallback
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else fallback


class Kube:
    """:class:`ClusterApi` over one kubernetes_asyncio ``ApiClient``."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._client = api_client
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)

    @property
    def api_client(self) -> client.ApiClient:
        return self._client

    def _plain(self, obj: Any) -> Body:
        plain = self._client.sanitize_for_serialization(obj)
        assert isinstance(plain, dict)
        return plain

    async def json(self, request: Awaitable[Any]) -> Body:
        """Await a request made with ``_preload_content=False`` and parse its body as plain JSON.

        Skipping the client's model classes matters at scale: building typed models
        from every response and turning them back into dicts cost most of a reconcile.
        """
        response = await self.call(request)
        try:
            payload = await response.read()
        except (TimeoutError, aiohttp.ClientError) as error:
            raise KubeError(0, f"{type(error).__name__}: {error}") from error
        finally:
            response.release()
        if not 200 <= response.status <= 299:
            raise KubeError(response.status, _status_message(payload, str(response.reason)))
        body = json.loads(payload)
        assert isinstance(body, dict)
        return body

    async def call(self, request: Awaitable[_T]) -> _T:
        """Await one API request, turning every transport or API failure into :class:`KubeError`.

        No request waits longer than :data:`REQUEST_TIMEOUT_S` for its answer: a connection that silently
        died must not hold a reconcile (and its pool slot) for good.
        """
        try:
            return await asyncio.wait_for(request, REQUEST_TIMEOUT_S)
        except ApiException as error:
            raise KubeError(int(error.status or 0), str(error.reason)) from error
        except (TimeoutError, aiohttp.ClientError) as error:
            raise KubeError(0, f"{type(error).__name__}: {error}") from error

    async def maybe(self, request: Awaitable[Any]) -> Body | None:
        try:
            return await self.json(request)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    async def apply(self, body: Body, field_manager: str) -> Body:
        """Server-side apply ``body`` (a Deployment, Service or PersistentVolumeClaim), forcing its fields."""
        name = body["metadata"]["name"]
        namespace = body["metadata"]["namespace"]
        options = {**_apply_options(field_manager), "_preload_content": False}
        kind = body["kind"]
        if kind == "Deployment":
            return await self.json(self.apps.patch_namespaced_deployment(name, namespace, body, **options))
        if kind == "Service":
            return await self.json(self.core.patch_namespaced_service(name, namespace, body, **options))
        if kind == "PersistentVolumeClaim":
            return await self.json(self.core.patch_namespaced_persistent_volume_claim(name, namespace, body, **options))
        if kind == "NetworkPolicy":
            return await self.json(self.networking.patch_namespaced_network_policy(name, namespace, body, **options))
        raise ValueError(f"cannot apply a {kind}")

    async def read(self, kind: str, namespace: str, name: str) -> Body | None:
        """A Deployment, Service or PersistentVolumeClaim by name, as plain JSON; None when there is none."""
        if kind == "Deployment":
            return await self.maybe(self.apps.read_namespaced_deployment(name, namespace, _preload_content=False))
        if kind == "Service":
            return await self.maybe(self.core.read_namespaced_service(name, namespace, _preload_content=False))
        if kind == "PersistentVolumeClaim":
            return await self.maybe(
                self.core.read_namespaced_persistent_volume_claim(name, namespace, _preload_content=False)
            )
        if kind == "NetworkPolicy":
            return await self.maybe(
                self.networking.read_namespaced_network_policy(name, namespace, _preload_content=False)
            )
        raise ValueError(f"cannot read a {kind}")

    async def apply_cluster_status(self, namespace: str, name: str, status: Body, field_manager: str) -> Body:
        """Server-side apply ``status`` to the ModelCluster's status; the cluster as the apiserver answered."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "status": status,
        }
        return await self.json(
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body,
                _preload_content=False,
                **_apply_options(field_manager),
            )
        )

    async def post_event(self, event: Body) -> None:
        """Create a core/v1 Event (built by :func:`modelcluster.operator.builders.events.build_event`)."""
        await self.json(
            self.core.create_namespaced_event(event["metadata"]["namespace"], cast(Any, event), _preload_content=False)
        )

    # ModelClusters, as the gateway drives them ------------------------------------------------------------------

    async def create_cluster(self, body: Body) -> Body:
        namespace = body["metadata"]["namespace"]
        return await self.json(
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body, _preload_content=False)
        )

    async def read_cluster(self, namespace: str, name: str) -> Body:
        return await self.json(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _preload_content=False)
        )

    async def patch_cluster(self, namespace: str, name: str, patch: Body) -> Body:
        """A JSON merge patch of one ModelCluster."""
        return await self.json(
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, patch, _preload_content=False, **MERGE_OPTIONS
            )
        )

    async def delete_cluster(self, namespace: str, name: str) -> None:
        await self.json(
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, _preload_content=False)
        )

    # Tenants: the operator's namespaces and quotas, the CLI's Tenants ---------------------------------------------

    async def read_namespace(self, name: str) -> Body | None:
        return await self.maybe(self.core.read_namespace(name, _preload_content=False))

    async def apply_namespace(self, body: Body, field_manager: str) -> Body:
        """Server-side apply a Namespace (the operator owns only the fields it sets: the tenant labels)."""
        name = body["metadata"]["name"]
        options = {**_apply_options(field_manager), "_preload_content": False}
        return await self.json(self.core.patch_namespace(name, body, **options))

    async def apply_resource_quota(self, body: Body, field_manager: str) -> Body:
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        options = {**_apply_options(field_manager), "_preload_content": False}
        return await self.json(self.core.patch_namespaced_resource_quota(name, namespace, body, **options))

    async def apply_limit_range(self, body: Body, field_manager: str) -> Body:
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        options = {**_apply_options(field_manager), "_preload_content": False}
        return await self.json(self.core.patch_namespaced_limit_range(name, namespace, body, **options))

    async def read_resource_quota(self, namespace: str, name: str) -> Body | None:
        return await self.maybe(self.core.read_namespaced_resource_quota(name, namespace, _preload_content=False))

    async def foreign_workloads(self, namespace: str, managed_selector: str) -> list[str]:
        """Up to one Deployment and one pod (``Kind/name``) in ``namespace`` not matching ``managed_selector``."""
        found: list[str] = []
        for kind, call in (
            ("Deployment", self.apps.list_namespaced_deployment),
            ("Pod", self.core.list_namespaced_pod),
        ):
            listed = await self.json(call(namespace, label_selector=managed_selector, limit=1, _preload_content=False))
            found.extend(f"{kind}/{item['metadata']['name']}" for item in listed.get("items") or [])
        return found

    async def apply_tenant_status(self, name: str, status: Body, field_manager: str) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": TENANT_KIND, "metadata": {"name": name}, "status": status}
        await self.json(
            self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, TENANT_PLURAL, name, body, _preload_content=False, **_apply_options(field_manager)
            )
        )

    async def read_tenant(self, name: str) -> Body | None:
        return await self.maybe(
            self.custom.get_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL, name, _preload_content=False)
        )

    async def create_tenant(self, body: Body) -> Body:
        return await self.json(
            self.custom.create_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL, body, _preload_content=False)
        )

    async def patch_tenant(self, name: str, patch: Body) -> Body:
        """A JSON merge patch of one Tenant."""
        return await self.json(
            self.custom.patch_cluster_custom_object(
                GROUP, VERSION, TENANT_PLURAL, name, patch, _preload_content=False, **MERGE_OPTIONS
            )
        )

    async def delete_tenant(self, name: str) -> None:
        await self.json(
            self.custom.delete_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL, name, _preload_content=False)
        )

    async def list_tenant_objects(self) -> list[Body]:
        listed = await self.json(
            self.custom.list_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL, _preload_content=False)
        )
        return list(listed.get("items") or [])

    # List calls the informers follow -------------------------------------------------------------------------------

    def list_all_clusters(self, **kwargs: Any) -> Awaitable[Any]:
        return self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)

    def list_tenants(self, **kwargs: Any) -> Awaitable[Any]:
        return self.custom.list_cluster_custom_object(GROUP, VERSION, TENANT_PLURAL, **kwargs)

    def list_all_endpoint_slices(self, **kwargs: Any) -> Awaitable[Any]:
        return self.discovery.list_endpoint_slice_for_all_namespaces(**kwargs)

    def list_all_services(self, **kwargs: Any) -> Awaitable[Any]:
        return self.core.list_service_for_all_namespaces(**kwargs)

    def list_namespaces(self, **kwargs: Any) -> Awaitable[Any]:
        return self.core.list_namespace(**kwargs)

    def list_all_network_policies(self, **kwargs: Any) -> Awaitable[Any]:
        return self.networking.list_network_policy_for_all_namespaces(**kwargs)
