"""The NetworkPolicy of every tenant namespace, kept from the moment the namespace appears.

Tenant namespaces are made after install (``modelcluster keys create``, Tenant resources), so no install-time
list can cover them. The operator follows them instead: a watch of the namespaces labelled
``modelcluster.dev/tenant`` (cluster-wide operators), or the namespaces it serves (``--namespace``), and a watch
of the policies it applied. Each tenant namespace gets :func:`~modelcluster.api.tenant_policy.build_tenant_policy`
applied when it appears, and again whenever that policy is changed or deleted by someone else.

The operator never takes over a policy it did not make: one of the same name without its managed-by label (the
Helm chart's, rendered for the tenants it knows, or anyone's) is left as it is, and said once in the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from modelcluster.api import labels
from modelcluster.api.labels import selector_text
from modelcluster.api.tenant_policy import (
    POLICY_NAME,
    TenantPolicyConfig,
    build_tenant_policy,
    is_tenant_namespace,
    policy_labels,
)
from modelcluster.kube.client import Kube, KubeError
from modelcluster.kube.informer import run_informer
from modelcluster.kube.objects import Body, metadata_of
from modelcluster.operator.config import FIELD_MANAGER

logger = logging.getLogger(__name__)

RETRY_S = 5.0


def is_ours(policy: Mapping[str, Any]) -> bool:
    """Whether a policy was applied by the operator (its managed-by label)."""
    return (metadata_of(policy).get("labels") or {}).get(labels.MANAGED_BY) == labels.MANAGER


def needs_apply(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    """Whether the operator's policy ``live`` (None: missing) differs from ``desired`` in spec or labels."""
    if live is None:
        return True
    live_labels = metadata_of(live).get("labels") or {}
    wanted = metadata_of(desired).get("labels") or {}
    return live.get("spec") != desired.get("spec") or any(live_labels.get(k) != v for k, v in wanted.items())


class _Table:
    """Objects by one key (a namespace's name); ``changed`` hears each key that changed."""

    def __init__(self, key_of: Callable[[Mapping[str, Any]], str | None], changed: Callable[[str], None]) -> None:
        self.key_of = key_of
        self.changed = changed
        self.items: dict[str, Body] = {}

    def reset(self, items: list[Body]) -> None:
        before = self.items
        self.items = {key: item for item in items if (key := self.key_of(item)) is not None}
        for key in set(before) | set(self.items):
            self.changed(key)

    def event(self, kind: str, obj: Body) -> None:
        key = self.key_of(obj)
        if key is None:
            return
        if kind == "DELETED":
            self.items.pop(key, None)
        else:
            self.items[key] = obj
        self.changed(key)


def _namespace_name(namespace: Mapping[str, Any]) -> str | None:
    name = metadata_of(namespace).get("name")
    return str(name) if name else None


def _policy_namespace(policy: Mapping[str, Any]) -> str | None:
    metadata = metadata_of(policy)
    if metadata.get("name") != POLICY_NAME or not metadata.get("namespace"):
        return None
    return str(metadata["namespace"])


class TenantPolicies:
    """Applies the tenant NetworkPolicy to each tenant namespace (the leader runs one)."""

    def __init__(
        self, kube: Kube, config: TenantPolicyConfig, platform: tuple[str, ...], served: tuple[str, ...] = ()
    ) -> None:
        self.kube = kube
        self.config = config
        self.platform = platform
        #: Namespaced mode: these are the tenants (no namespace watch; Roles cannot grant one).
        self.served = served
        self.namespaces = _Table(_namespace_name, self._dirty)
        self.policies = _Table(_policy_namespace, self._dirty)
        self._pending: set[str] = set(served)
        self._wake = asyncio.Event()
        if served:
            self._wake.set()
        self._foreign: set[str] = set()

    def _dirty(self, namespace: str) -> None:
        self._pending.add(namespace)
        self._wake.set()

    def is_tenant(self, namespace: str) -> bool:
        if self.served:
            return namespace in self.served
        found = self.namespaces.items.get(namespace)
        return found is not None and is_tenant_namespace(
            namespace, metadata_of(found).get("labels"), (*self.platform, self.config.platform_namespace)
        )

    async def sync(self, namespace: str) -> None:
        """Apply the policy of ``namespace`` if it is a tenant and the policy is missing or not as built."""
        if not self.is_tenant(namespace):
            return  # no longer a tenant: its policy stays (dropping isolation is an administrator's call)
        desired = build_tenant_policy(namespace, self.config)
        live = self.policies.items.get(namespace)
        if not needs_apply(desired, live):
            return
        if live is None:
            found = await self.kube.read("NetworkPolicy", namespace, POLICY_NAME)
            if found is not None and not is_ours(found):
                if namespace not in self._foreign:
                    self._foreign.add(namespace)
                    logger.info("%s: NetworkPolicy %s is not the operator's; left as it is", namespace, POLICY_NAME)
                return
        self._foreign.discard(namespace)
        await self.kube.apply(desired, FIELD_MANAGER)
        logger.info("%s: applied the tenant NetworkPolicy %s", namespace, POLICY_NAME)

    async def run(self) -> None:
        """Watch and apply until cancelled."""
        synced = [asyncio.Event(), asyncio.Event()]
        watches: list[asyncio.Task[None]] = []
        if not self.served:
            # Cluster-wide: every tenant namespace as it appears, and the policies to put back when changed.
            watches = [
                asyncio.create_task(
                    run_informer(
                        self.kube, self.kube.list_all_network_policies, self.policies, synced[0], "NetworkPolicies",
                        label_selector=selector_text(policy_labels()),
                    )
                ),
                asyncio.create_task(
                    run_informer(
                        self.kube, self.kube.list_namespaces, self.namespaces, synced[1], "tenant namespaces",
                        label_selector=labels.TENANT,
                    )
                ),
            ]  # fmt: skip
        else:
            # Namespaced (Roles only): the served namespaces, each applied (and read first) once at start.
            for event in synced:
                event.set()
        try:
            await asyncio.gather(*(event.wait() for event in synced))
            await self._work()
        finally:
            for task in watches:
                task.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                namespace = self._pending.pop()
                try:
                    await self.sync(namespace)
                except KubeError as error:
                    if error.gone:
                        continue
                    logger.warning("%s: the tenant NetworkPolicy was not applied (%s); trying again", namespace, error)
                    loop.call_later(RETRY_S, self._dirty, namespace)
