"""One in-memory fake of :class:`modelcluster.kube.client.Kube` for the operator's and the gateway's unit tests.

It is a :class:`Kube` (so it also satisfies :class:`~modelcluster.kube.client.ClusterApi`) without a
connection: the typed calls keep objects in memory and record what was written, and requests made through
the generated API objects (``kube.core``, ``kube.discovery``, ...) are recorded and answered without a
server (:meth:`call` with None, :meth:`json` with an empty object).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client

from modelcluster.api import KIND
from modelcluster.kube.client import Kube, KubeError
from modelcluster.kube.objects import Body

_T = TypeVar("_T")
Key = tuple[str, str, str]


def _fields(body: Body) -> dict[str, Any]:
    """A stand-in for the apiserver's fieldsV1: the spec keys a manager set, nested under ``f:spec`` as there."""
    return {"f:spec": {f"f:{key}": {} for key in sorted(body.get("spec") or {})}}


def _spec_fields(entry: Body) -> dict[str, Any]:
    spec: dict[str, Any] = entry["fieldsV1"].setdefault("f:spec", {})
    return spec


class _NoServer(client.ApiClient):  # type: ignore[misc]
    """An ``ApiClient`` that builds requests but has no connection pool: nothing it makes reaches a server."""

    def __init__(self) -> None:
        self.configuration = client.Configuration()
        self.pool_threads = 1
        self.default_headers: dict[str, str] = {}
        self.cookie = None
        self.user_agent = "modelcluster-tests"
        self.client_side_validation = self.configuration.client_side_validation

    def call_api(self, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        return _unanswered(str(args[:2]))

    async def close(self) -> None:
        """No pool to close."""


async def _unanswered(request: str) -> Any:
    raise AssertionError(f"{request} reached the fake's client: await it through FakeKube.call or FakeKube.json")


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch (RFC 7386) ``patch`` applied; neither is changed."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class FakeKube(Kube):
    """An apiserver in memory, good enough for the reconciler, the autoscaler and the router.

    - :meth:`apply` is a server-side apply, roughly: fields merge into the stored object, each field manager's
      spec keys land in ``managedFields`` (under ``f:spec``), a forced apply by ``replicas_manager`` takes
      ``replicas`` over, a spec key that a manager applied before, leaves out now and no other manager owns is
      removed, and a ``metadata.resourceVersion`` in the body is a precondition (409 when it is not the stored one,
      recorded in ``conflicts``);
    - :meth:`patch_cluster` merges into the ModelCluster that ``read`` finds (the stored one unless given);
    - :meth:`read` answers stored children by name (``reads`` records them) and :meth:`put` stores a foreign one;
    - every write is recorded (``applies``, ``statuses``, ``events``, ``patches``, ``requests``) and counted
      in ``writes``; ``fail_with`` makes :meth:`apply` raise (a rejected or failed child); ``on_apply`` sees
      each applied body; :meth:`apply_cluster_status` answers a new ``resourceVersion``.
    """

    def __init__(
        self,
        *,
        read: Callable[[str, str], Body | None] | None = None,
        status_manager: str | None = None,
        replicas_manager: str | None = None,
        on_apply: Callable[[Body], None] | None = None,
    ) -> None:
        super().__init__(_NoServer())
        self.objects: dict[Key, Body] = {}
        self.applies: list[tuple[str, str, Body]] = []
        #: Applies refused for their ``resourceVersion`` precondition (409).
        self.conflicts: list[tuple[str, str, Body]] = []
        self.statuses: list[Body] = []
        self.events: list[Body] = []
        self.patches: list[tuple[str, str, Body]] = []
        self.reads: list[tuple[str, str]] = []
        self.requests = 0
        self.writes: list[str] = []
        self.fail_with: KubeError | None = None
        self.version = 100
        self._read = read
        self._status_manager = status_manager
        self._replicas_manager = replicas_manager
        self._on_apply = on_apply

    def stored(self, kind: str, namespace: str, name: str) -> Body:
        """A copy of a stored object."""
        return copy.deepcopy(self.objects[(kind, namespace, name)])

    async def apply(self, body: Body, field_manager: str) -> Body:
        if self.fail_with is not None:
            raise self.fail_with
        kind, metadata_in = body["kind"], body["metadata"]
        key = (kind, metadata_in["namespace"], metadata_in["name"])
        expected = metadata_in.get("resourceVersion")
        if expected is not None:  # refused before anything is written or recorded
            found = self.objects.get(key)
            if found is None or found["metadata"].get("resourceVersion") != expected:
                self.conflicts.append((kind, field_manager, copy.deepcopy(body)))
                raise KubeError(409, f"the object has been modified; resourceVersion {expected} is not the latest")
        self.applies.append((kind, field_manager, copy.deepcopy(body)))
        self.writes.append(f"apply {kind}")
        if self._on_apply is not None:
            self._on_apply(body)
        current = self.objects.setdefault(key, {"kind": kind, "metadata": {}, "spec": {}, "status": {}})
        metadata = current["metadata"]
        metadata.update({k: v for k, v in metadata_in.items() if k != "annotations"})
        metadata.setdefault("annotations", {}).update(metadata_in.get("annotations") or {})
        current["spec"].update(body.get("spec", {}))
        entries = metadata.get("managedFields", [])
        before = next((m for m in entries if m["manager"] == field_manager), None)
        managed = [m for m in entries if m["manager"] != field_manager]
        if field_manager == self._replicas_manager:  # forced: ownership of replicas moves over
            for entry in managed:
                _spec_fields(entry).pop("f:replicas", None)
        fields = _fields(body)
        if before is not None:  # what this manager alone owned and leaves out now goes
            others = {name for entry in managed for name in _spec_fields(entry)}
            for name in set(_spec_fields(before)) - set(fields["f:spec"]) - others:
                current["spec"].pop(name.removeprefix("f:"), None)
        managed.append({"manager": field_manager, "operation": "Apply", "fieldsV1": fields})
        metadata["managedFields"] = managed
        self.version += 1
        metadata["resourceVersion"] = str(self.version)
        return copy.deepcopy(current)

    async def read(self, kind: str, namespace: str, name: str) -> Body | None:
        """A stored Deployment, Service or claim by name (recorded in ``reads``); None when there is none."""
        if self.fail_with is not None:
            raise self.fail_with
        self.reads.append((kind, name))
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def put(
        self, kind: str, name: str, metadata: Body | None = None, spec: Body | None = None, namespace: str = "tenant"
    ) -> Body:
        """An object someone else created, as the apiserver has it."""
        body = {
            "kind": kind,
            "metadata": {"name": name, "namespace": namespace, **(metadata or {})},
            "spec": spec or {},
        }
        self.objects[(kind, namespace, name)] = body
        return copy.deepcopy(body)

    async def apply_cluster_status(self, namespace: str, name: str, status: Body, field_manager: str) -> Body:
        if self._status_manager is not None:
            assert field_manager == self._status_manager, field_manager
        self.statuses.append(status)
        self.writes.append(f"status {status}")
        self.version += 1
        metadata = {"name": name, "namespace": namespace, "resourceVersion": str(self.version)}
        return {"kind": KIND, "metadata": metadata, "status": copy.deepcopy(status)}

    async def post_event(self, event: Body) -> None:
        self.events.append(event)
        self.writes.append(f"event {event.get('reason')}")

    async def read_cluster(self, namespace: str, name: str) -> Body:
        found = self._read(namespace, name) if self._read is not None else self.objects.get((KIND, namespace, name))
        if found is None:
            raise KubeError(404, f'modelclusters.modelcluster.dev "{name}" not found')
        return copy.deepcopy(found)

    async def patch_cluster(self, namespace: str, name: str, patch: Body) -> Body:
        self.patches.append((namespace, name, patch))
        self.writes.append(f"patch {namespace}/{name}")
        await asyncio.sleep(0)  # the answer comes back later than the request left
        merged: Body = merge_patch(await self.read_cluster(namespace, name), patch)
        # Every write gets a later resourceVersion than the object had, as the apiserver gives it.
        stored = str(merged.setdefault("metadata", {}).get("resourceVersion") or "0")
        self.version = max(self.version, int(stored) if stored.isdigit() else 0) + 1
        merged["metadata"]["resourceVersion"] = str(self.version)
        if self._read is None:
            self.objects[(KIND, namespace, name)] = merged
        return copy.deepcopy(merged)

    async def call(self, request: Awaitable[_T]) -> _T:
        """Record a request of the generated API objects and answer None, never reaching a server."""
        if inspect.iscoroutine(request):
            request.close()
        self.requests += 1
        self.writes.append("request")
        return None  # type: ignore[return-value]

    async def json(self, request: Awaitable[Any]) -> Body:
        await self.call(request)
        return {}
