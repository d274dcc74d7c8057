"""The warm pool at work: keep each pool filled, lend a standby to a woken cluster, take it back after hand-over.

One task (the leader's). A pod watch per pool namespace (``modelcluster.dev/pool``) feeds its own table; the
store's ModelClusters and pods say which clusters are woken and whether their own pods are Ready. Every change
(and a 1 s tick) runs :meth:`WarmPool.sync`, whose decisions are the pure ones of
:mod:`modelcluster.operator.builders.warm_pool`:

- a pool with fewer waiting standbys than its size gets new ones (created, never patched into shape);
- a cluster whose wake is new, with no Ready pod of its own, claims the best waiting standby of its pool: the
  pod is relabelled into the cluster's selector and told, with the standby's own credential, which model to load
  and which credential (the cluster's verifier) to answer from now on; both at once. The gateway's first-answer
  probe then routes the held requests to it the moment its ``/health`` answers 200;
- a borrowed pod is deleted (it drains: streams finish) once one of the cluster's own pods is Ready, when its
  cluster is gone, or when it failed (restarted, ended, or refused the load): the cluster then waits for its own
  pod, exactly as without a pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp

from modelcluster.api.pod_auth import CredentialIssuer
from modelcluster.api.standby import ADMIN_LOAD_PATH, LoadOrder
from modelcluster.api.warm_pool import NONCE_ANNOTATION, POOL_LABEL, standby_subject
from modelcluster.catalog import Catalog
from modelcluster.kube.client import MERGE_OPTIONS, Kube, KubeError
from modelcluster.kube.index import Index, NamespaceView
from modelcluster.kube.informer import run_informer
from modelcluster.kube.objects import Body, ClusterKey, metadata_of, name_of
from modelcluster.operator.builders.plan import plan
from modelcluster.operator.builders.standby_status import state_of
from modelcluster.operator.builders.warm_pool import (
    Pool,
    borrowed_by,
    build_standby_pod,
    claim_patch,
    deficit,
    handover_due,
    pool_for,
    standby_pod_name,
    to_delete,
    waiting,
    wake_to_claim,
)
from modelcluster.operator.builders.workload import PodOptions
from modelcluster.operator.controller.store import Store, slim_pod

logger = logging.getLogger(__name__)

TICK_S = 1.0
LOAD_TIMEOUT_S = 10.0


class LoadRefused(Exception):
    """The standby did not take the load order."""


def pool_key(obj: Mapping[str, Any]) -> ClusterKey | None:
    """A pool pod's (namespace, pool name)."""
    meta = metadata_of(obj)
    pool = (meta.get("labels") or {}).get(POOL_LABEL)
    return (str(meta.get("namespace")), str(pool)) if pool else None


class WarmPool:
    """The pools of ``namespaces``; run :meth:`run` as one task."""

    def __init__(
        self,
        kube: Kube,
        catalog: Catalog,
        pools: tuple[Pool, ...],
        namespaces: tuple[str, ...],
        store: Store,
        credentials: CredentialIssuer,
        options: PodOptions,
        on_claim: Any = None,
    ) -> None:
        self.kube = kube
        self.catalog = catalog
        self.pools = pools
        self.namespaces = namespaces
        self.store = store
        self.credentials = credentials
        self.options = options
        self.on_claim = on_claim
        self.pods = Index(pool_key, slim_pod)
        self.synced = asyncio.Event()
        self._poke = asyncio.Event()
        self._claimed: dict[ClusterKey, set[str]] = {}
        self._deleting: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.pods.subscribe(self._changed)
        store.clusters.subscribe(self._changed)
        store.pods.subscribe(self._changed)

    def _changed(self, key: ClusterKey, new: Body | None, old: Body | None) -> None:
        if key[0] in self.namespaces:
            self._poke.set()

    async def run(self) -> None:
        watches = []
        synced = []
        for namespace in self.namespaces:
            event = asyncio.Event()
            call = functools.partial(self.kube.core.list_namespaced_pod, namespace)
            watches.append(
                asyncio.create_task(
                    run_informer(
                        self.kube, call, NamespaceView(self.pods, namespace), event, f"pool pods in {namespace}",
                        label_selector=POOL_LABEL,
                    )
                )
            )  # fmt: skip
            synced.append(event)
        try:
            await asyncio.gather(self.store.synced.wait(), *(event.wait() for event in synced))
            self.synced.set()
            logger.info("warm pool running: %s in %s", ", ".join(f"{p.name}={p.size}" for p in self.pools),
                        ", ".join(self.namespaces))  # fmt: skip
            while True:
                self._poke.clear()
                await self.sync()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._poke.wait(), TICK_S)
        finally:
            for task in [*watches, *self._tasks]:
                task.cancel()
            await asyncio.gather(*watches, *self._tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

    async def sync(self) -> None:
        """One pass over every pool and every cluster of the pool namespaces."""
        now = datetime.now(UTC)
        for key, group in list(self.store.clusters.items.items()):
            if key[0] in self.namespaces:  # claims first: a wake waits for nothing else
                for cluster in list(group.values()):
                    self._maybe_claim(key, cluster, now)
        for namespace in self.namespaces:
            for pool in self.pools:
                await self._tend(namespace, pool)

    async def _tend(self, namespace: str, pool: Pool) -> None:
        pods = self.pods.all((namespace, pool.name))
        for pod in pods:
            cluster = borrowed_by(pod)
            if metadata_of(pod).get("deletionTimestamp"):
                continue  # leaving (draining): nothing more to decide
            if to_delete(pod):
                self._delete(pod, "it failed" if cluster else "it ended or restarted")
            elif cluster is not None:
                key = (namespace, cluster)
                if self.store.clusters.one(key) is None:
                    self._delete(pod, f"cluster {cluster} is gone")
                elif handover_due(self.store.pods.all(key)):
                    self._delete(pod, f"the own pod of {cluster} is ready: handing over")
        for _ in range(deficit(pool, self.pods.all((namespace, pool.name)))):
            await self._create(namespace, pool)

    async def _create(self, namespace: str, pool: Pool) -> None:
        name = standby_pod_name(pool, secrets.token_hex(3))
        nonce = secrets.token_hex(16)
        verifier = self.credentials.verifier(*standby_subject(namespace, name, nonce))
        body = build_standby_pod(pool, namespace, name, nonce, verifier, self.options)
        try:
            created = await self.kube.json(
                self.kube.core.create_namespaced_pod(namespace, cast(Any, body), _preload_content=False)
            )
        except KubeError as error:
            logger.warning("pool %s in %s: creating a standby failed: %s", pool.name, namespace, error)
            return
        self.pods.event("ADDED", created)  # counted at once, before the watch brings it
        logger.info("pool %s in %s: standby %s created", pool.name, namespace, name)

    def _delete(self, pod: Mapping[str, Any], why: str) -> None:
        namespace, name = str(metadata_of(pod).get("namespace")), name_of(pod)
        if (namespace, name) in self._deleting:
            return
        self._deleting.add((namespace, name))
        logger.info("%s/%s: deleting the pool pod: %s", namespace, name, why)
        self._spawn(self._delete_pod(namespace, name), f"delete {name}")

    async def _delete_pod(self, namespace: str, name: str) -> None:
        try:
            leaving = await self.kube.json(
                self.kube.core.delete_namespaced_pod(name, namespace, _preload_content=False)
            )
        except KubeError as error:
            if error.status != 404:
                logger.warning("%s/%s: deleting the pool pod failed: %s", namespace, name, error)
        else:
            if leaving.get("kind") == "Pod" and metadata_of(leaving).get("deletionTimestamp"):
                self.pods.event("MODIFIED", leaving)  # draining now: decided, before the watch says so
        finally:
            self._deleting.discard((namespace, name))
        self._poke.set()

    def _spawn(self, work: Any, name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _maybe_claim(self, key: ClusterKey, cluster: Body, now: datetime) -> None:
        wake = wake_to_claim(cluster, self.store.pods.all(key), self._claimed.get(key, set()), now)
        if wake is None:
            return
        planned = plan(cluster, self.catalog, self.options, now, self.credentials)
        if planned.workload is None or planned.workload.credential_sha256 is None:
            return
        placement = planned.workload.placement
        pool = pool_for(placement, self.pools)
        self._claimed[key] = {wake}  # one claim per wake, found or not: without a standby the wake is a cold start
        if pool is None:
            return
        candidates = [pod for pod in waiting(self.pods.all((key[0], pool.name))) if self._free(pod)]
        if not candidates:
            logger.info("%s/%s woken: no standby waiting in pool %s", key[0], key[1], pool.name)
            return
        pod = candidates[0]
        order = LoadOrder(
            model_id=placement.model_id, task=placement.task, credential_sha256=planned.workload.credential_sha256
        )
        patch = claim_patch(key[1], placement.model_id, placement.task, wake, now)
        # Marked claimed in the table at once, so no second cluster takes it before the watch says so.
        self.pods.event("MODIFIED", _patched(pod, patch))
        self._spawn(self._claim(key, pod, patch, order), f"claim {name_of(pod)} for {key[1]}")

    def _free(self, pod: Mapping[str, Any]) -> bool:
        return (str(metadata_of(pod).get("namespace")), name_of(pod)) not in self._deleting

    async def _claim(self, key: ClusterKey, pod: Mapping[str, Any], patch: Body, order: LoadOrder) -> None:
        namespace, name = str(metadata_of(pod).get("namespace")), name_of(pod)
        started = time.monotonic()
        # The load first (it answers at once and loads in the background, while the relabel goes out): a standby
        # that refuses it never joins the cluster's selector.
        try:
            await self._load(pod, order)
            relabelled = await self.kube.json(
                self.kube.core.patch_namespaced_pod(name, namespace, patch, _preload_content=False, **MERGE_OPTIONS)
            )
        except (aiohttp.ClientError, TimeoutError, KubeError, LoadRefused) as error:
            logger.warning("%s/%s: claiming standby %s failed (%s); the cluster waits for its own pod",
                           key[0], key[1], name, error)  # fmt: skip
            self._delete(pod, "its claim failed")
            return
        self.pods.event("MODIFIED", relabelled)
        logger.info("%s/%s: borrowed standby %s, loading %s (%.2fs)", key[0], key[1], name, order.model_id,
                    time.monotonic() - started)  # fmt: skip
        if self.on_claim is not None:
            self.on_claim(key)

    async def _load(self, pod: Mapping[str, Any], order: LoadOrder) -> None:
        meta = metadata_of(pod)
        ip = (pod.get("status") or {}).get("podIP")
        nonce = (meta.get("annotations") or {}).get(NONCE_ANNOTATION)
        if not ip or not nonce:
            raise LoadRefused("the standby has no address or no nonce")
        headers = self.credentials.headers(*standby_subject(str(meta.get("namespace")), name_of(pod), str(nonce)))
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=LOAD_TIMEOUT_S))
        url = f"http://{ip}:{self.options.port}{ADMIN_LOAD_PATH}"
        async with self._session.post(
            url, data=order.model_dump_json(exclude_none=True), headers={**headers, "Content-Type": "application/json"}
        ) as response:
            if response.status != 202:
                raise LoadRefused(f"the load call answered {response.status}: {(await response.text())[:200]}")


def _patched(pod: Mapping[str, Any], patch: Body) -> Body:
    meta = dict(metadata_of(pod))
    meta["labels"] = {**(meta.get("labels") or {}), **patch["metadata"]["labels"]}
    meta["annotations"] = {**(meta.get("annotations") or {}), **patch["metadata"]["annotations"]}
    return {**pod, "metadata": meta}


__all__ = ["WarmPool", "pool_key", "state_of"]
