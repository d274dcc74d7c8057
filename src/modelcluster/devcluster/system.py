"""The system on a cluster, as ``modelcluster dev``, the tests and the benchmarks start it.

One sequence: the control plane is up; :func:`install` puts the namespaces and the CRD in (and waits
until the CRD is served); the operator and the gateway then run as local processes with the argv of
:func:`operator_argv` and :func:`gateway_argv`.
:func:`modelcluster_body` is the ModelCluster that the tests, the benchmarks and ``dev`` create.
"""

from __future__ import annotations

import base64
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from modelcluster.api import GROUP, KIND, VERSION
from modelcluster.api.naming import object_name
from modelcluster.api.pod_auth import SIGNING_KEY_ENV, SIGNING_KEY_FIELD, SIGNING_KEY_SECRET
from modelcluster.crd.definition import render_all_crds
from modelcluster.gateway.tenancy import tenant_labels

CRD_NAME = "modelclusters.modelcluster.dev"
TENANT_CRD_NAME = "tenants.modelcluster.dev"
SYSTEM_NAMESPACE = "modelcluster-system"
PART_OF = {"app.kubernetes.io/part-of": "modelcluster"}


class KubectlRun(Protocol):
    """kubectl with these arguments (and standard input); a failure raises."""

    def __call__(self, *args: str, stdin: str | None = None) -> None: ...


def executable() -> Path:
    """The ``modelcluster`` command of the running interpreter's environment."""
    return Path(sys.executable).with_name("modelcluster")


def namespace_bodies(names: Iterable[str], tenants: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Namespaces of the system (labelled as part of modelcluster), then tenant namespaces (with the tenant label)."""
    system_namespaces = [{"name": name, "labels": dict(PART_OF)} for name in names]
    tenant_namespaces = [{"name": name, "labels": {**PART_OF, **tenant_labels(name)}} for name in tenants]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
        for metadata in (*system_namespaces, *tenant_namespaces)
    ]


def pod_auth_key(path: Path) -> str:
    """The signing key of the pod credentials kept in ``path``: made once (random, mode 0600), then reused, so
    a restarted operator signs as before and running pods keep answering the gateway."""
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.touch(mode=0o600)
    partial.write_text(secrets.token_urlsafe(48))
    partial.rename(path)
    return path.read_text().strip()


def pod_auth_env(key: str) -> dict[str, str]:
    """The environment that gives the operator and the gateway the signing key (never a flag: argv is public)."""
    return {SIGNING_KEY_ENV: key}


def pod_auth_secret(key: str, namespace: str = SYSTEM_NAMESPACE) -> dict[str, Any]:
    """The Secret of the signing key in the platform namespace, as the Helm chart makes it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SIGNING_KEY_SECRET, "namespace": namespace, "labels": dict(PART_OF)},
        "data": {SIGNING_KEY_FIELD: base64.b64encode(key.encode()).decode()},
    }


def install(
    kubectl: KubectlRun,
    namespaces: Sequence[str] = (SYSTEM_NAMESPACE,),
    tenants: Sequence[str] = (),
    pod_auth: str | None = None,
) -> None:
    """Apply ``namespaces``, the tenant namespaces ``tenants``, the signing key Secret (``pod_auth``, when given)
    and the CRD; wait until ModelClusters are served."""
    bodies = namespace_bodies(namespaces, tenants)
    if bodies:
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bodies, sort_keys=False))
    if pod_auth is not None:
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(pod_auth_secret(pod_auth), sort_keys=False))
    kubectl("apply", "--server-side", "-f", "-", stdin=render_all_crds())
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", f"crd/{TENANT_CRD_NAME}")


def operator_argv(
    command: Path,
    *,
    metrics_port: int,
    health_port: int,
    lease_namespace: str | None = SYSTEM_NAMESPACE,
    extra: Sequence[str] = (),
) -> list[str]:
    """``modelcluster operator`` on these ports; leader election in ``lease_namespace`` (None: no election)."""
    election = [f"--lease-namespace={lease_namespace}"] if lease_namespace else ["--no-leader-elect"]
    return [
        str(command),
        "operator",
        *election,
        f"--metrics-port={metrics_port}",
        f"--health-port={health_port}",
        *extra,
    ]


def gateway_argv(
    command: Path,
    *,
    port: int,
    metrics_port: int,
    host: str | None = None,
    key_namespace: str = SYSTEM_NAMESPACE,
    extra: Sequence[str] = (),
) -> list[str]:
    """``modelcluster gateway``: the API on ``port``, ``/metrics`` on ``metrics_port`` (every address unless
    ``host``), its keys in ``key_namespace``."""
    bind = [f"--host={host}"] if host else []
    return [
        str(command),
        "gateway",
        *bind,
        f"--port={port}",
        f"--metrics-port={metrics_port}",
        f"--key-namespace={key_namespace}",
        *extra,
    ]


def modelcluster_body(
    model: str,
    *,
    capacity: Mapping[str, int] | None = None,
    timeout: int | None = None,
    task: str | None = None,
    namespace: str | None = None,
    name: str | None = None,
    annotations: Mapping[str, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
    status: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ModelCluster of ``model``, named :func:`~modelcluster.api.naming.object_name` of it unless ``name``.

    ``metadata`` and ``spec`` add fields of their own (a uid, a generation; podOptions); the other
    arguments leave their field out when None.
    """
    meta: dict[str, Any] = {"name": name or object_name(model)}
    if namespace is not None:
        meta["namespace"] = namespace
    if annotations is not None:
        meta["annotations"] = dict(annotations)
    meta.update(metadata or {})
    fields: dict[str, Any] = {"model": model}
    if task is not None:
        fields["task"] = task
    if capacity is not None:
        fields["capacity"] = dict(capacity)
    if timeout is not None:
        fields["timeout"] = timeout
    fields.update(spec or {})
    body: dict[str, Any] = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": meta, "spec": fields}
    if status is not None:
        body["status"] = dict(status)
    return body
