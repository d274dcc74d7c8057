"""``modelcluster keys``: create, list and revoke the gateway's API keys.

Each key is a Secret ``modelcluster-key-<id>`` in the gateway's namespace holding the
key's SHA-256, its tenant namespace and its concurrency limit (see
:mod:`modelcluster.gateway.keys`). The key itself is printed once, by ``create``, as
the last line of standard output, and is stored nowhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from kubernetes_asyncio import client
from kubernetes_asyncio.config.config_exception import ConfigException

from modelcluster.gateway.keys import (
    API_KEY_LABEL,
    KEY_SELECTOR,
    PART_OF,
    PART_OF_LABEL,
    TENANT_LABEL,
    ApiKeyRecord,
    InvalidKeySecret,
    InvalidTenant,
    build_key_secret,
    generate_key,
    is_key_id,
    key_id_of,
    secret_name,
    validate_tenant,
    validate_tenant_name,
)
from modelcluster.gateway.tenancy import DEFAULT_KEY_NAMESPACE, is_tenant_namespace, tenant_labels
from modelcluster.gateway.tenants_cli import ensure_tenant
from modelcluster.kube.client import Kube, KubeError, load_client_configuration
from modelcluster.kube.objects import metadata_of, rfc3339

DEFAULT_NAMESPACE = DEFAULT_KEY_NAMESPACE
DEFAULT_CONCURRENCY = 10
#: Attempts at a fresh key id when a generated one is taken (48 random bits make this all but impossible).
CREATE_ATTEMPTS = 3

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Api:
    """The calls the commands make, over one API client."""

    api_client: client.ApiClient
    kube: Kube
    core: client.CoreV1Api

    def plain(self, obj: Any) -> dict[str, Any]:
        body = self.api_client.sanitize_for_serialization(obj)
        assert isinstance(body, dict)
        return body


def _run(action: Callable[[_Api], Awaitable[_T]]) -> _T:
    """Run ``action`` against the cluster of ``$KUBECONFIG`` (or the pod's service account)."""

    async def run() -> _T:
        try:
            configuration = await load_client_configuration()
        except ConfigException as error:
            raise click.ClickException(f"no Kubernetes configuration: {error}") from error
        async with client.ApiClient(configuration) as api_client:
            kube = Kube(api_client)
            return await action(_Api(api_client, kube, kube.core))

    try:
        return asyncio.run(run())
    except KubeError as error:
        raise click.ClickException(f"the Kubernetes API failed: {error}") from error


async def _ensure_namespace(api: _Api, name: str, labels: dict[str, str] | None = None) -> bool:
    """Create namespace ``name`` (with ``labels``) unless it exists; return whether it was created."""
    body = client.V1Namespace(
        metadata=client.V1ObjectMeta(name=name, labels={PART_OF_LABEL: PART_OF, **(labels or {})})
    )
    try:
        await api.kube.call(api.core.create_namespace(body))
    except KubeError as error:
        if error.status == 409:
            return False
        raise
    return True


class NotATenant(click.ClickException):
    """An existing namespace that was not made for a tenant."""


async def _ensure_tenant(api: _Api, tenant: str, existing: bool) -> str | None:
    """Make namespace ``tenant`` a tenant namespace; what was done (``created``, ``labelled``), else ``None``.

    A new namespace is created with the tenant label. An existing one must carry it already, or
    ``existing`` (``--existing-namespace``) must be given: then it is labelled; else :class:`NotATenant`.
    """
    if await _ensure_namespace(api, tenant, tenant_labels(tenant)):
        return "created"
    found = api.plain(await api.kube.call(api.core.read_namespace(tenant)))
    if is_tenant_namespace(tenant, metadata_of(found).get("labels")):
        return None
    if not existing:
        raise NotATenant(
            f"namespace {tenant} exists but is not a tenant namespace (it has no label {TENANT_LABEL}={tenant}); "
            f"to make it one, run again with --existing-namespace (it gets that label)"
        )
    patch = {"metadata": {"labels": tenant_labels(tenant)}}
    await api.kube.call(api.core.patch_namespace(tenant, patch))
    return "labelled"


def _secret_model(body: dict[str, Any]) -> client.V1Secret:
    metadata = body["metadata"]
    return client.V1Secret(
        api_version=body["apiVersion"],
        kind=body["kind"],
        type=body["type"],
        metadata=client.V1ObjectMeta(name=metadata["name"], namespace=metadata["namespace"], labels=metadata["labels"]),
        data=body["data"],
    )


namespace_option = click.option(
    "--namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    envvar="MODELCLUSTER_NAMESPACE",
    help="Namespace of the key Secrets (the gateway's namespace).",
)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys of the gateway."""


def _tenant(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_tenant(value, str(ctx.params.get("namespace") or DEFAULT_NAMESPACE))
    except InvalidTenant as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error


def _tenant_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_tenant_name(value)
    except InvalidTenant as error:
        raise click.BadParameter(str(error), ctx=ctx, param=param) from error


@keys.command()
@click.option(
    "--tenant",
    required=True,
    callback=_tenant,
    help="Tenant namespace the key acts in (created, labelled as a tenant, if missing; its Tenant too).",
)
@click.option(
    "--existing-namespace",
    is_flag=True,
    default=False,
    help=f"Make an existing namespace without the label {TENANT_LABEL} a tenant (label it).",
)
@click.option(
    "--concurrency",
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    type=click.IntRange(min=1),
    help="Requests the key may have in flight at once.",
)
@namespace_option
def create(tenant: str, existing_namespace: bool, concurrency: int, namespace: str) -> None:
    """Create a key for a tenant and print it.

    The key is the last line of standard output; it is stored only as a hash and
    cannot be shown again. The tenant namespace is created (with the label
    modelcluster.dev/tenant=TENANT) if missing; an existing namespace without that
    label is refused unless --existing-namespace is given. System and platform
    namespaces (default, kube-*, openshift-*, *-system, the key namespace, ...) are
    refused in every case. The Tenant TENANT (namespace TENANT, no quotas) is created when
    there is none.
    """
    try:
        validate_tenant(tenant, namespace)  # the callback saw --namespace only if it came first
    except InvalidTenant as error:
        raise click.BadParameter(str(error), param_hint="'--tenant'") from error

    async def action(api: _Api) -> tuple[str, list[str]]:
        done = await _ensure_tenant(api, tenant, existing_namespace)
        created = [f"{done} namespace {tenant}"] if done else []
        if await ensure_tenant(api.kube, tenant):
            created.append(f"created Tenant {tenant} (no quotas; see `modelcluster tenants set`)")
        if await _ensure_namespace(api, namespace):
            created.insert(0, f"created namespace {namespace}")
        for _ in range(CREATE_ATTEMPTS):
            key = generate_key()
            body = _secret_model(build_key_secret(key, tenant, concurrency, namespace))
            try:
                await api.kube.call(api.core.create_namespaced_secret(namespace, body))
            except KubeError as error:
                if error.status == 409:
                    continue  # that id is taken: draw another key
                raise
            return key, created
        raise click.ClickException(f"could not find a free key id in {CREATE_ATTEMPTS} attempts")

    key, created = _run(action)
    for line in created:
        click.echo(line, err=True)
    click.echo(f"API key {key_id_of(key)}: tenant {tenant}, concurrency {concurrency}", err=True)
    click.echo("Keep the key now; it is stored only as a hash and cannot be shown again.", err=True)
    click.echo(key)


@keys.command(name="list")
@click.option("--tenant", default=None, callback=_tenant_name, help="Only the keys of this tenant.")
@namespace_option
def list_keys(tenant: str | None, namespace: str) -> None:
    """List the keys: id, tenant, concurrency, creation time (never a key or its hash)."""
    selector = KEY_SELECTOR if tenant is None else f"{KEY_SELECTOR},{TENANT_LABEL}={tenant}"

    async def action(api: _Api) -> list[dict[str, Any]]:
        secrets = await api.kube.call(api.core.list_namespaced_secret(namespace, label_selector=selector))
        return list(api.plain(secrets).get("items") or [])

    records: list[ApiKeyRecord] = []
    for secret in _run(action):
        try:
            records.append(ApiKeyRecord.from_secret(secret))
        except InvalidKeySecret as error:
            name = metadata_of(secret).get("name")
            click.echo(f"warning: Secret {namespace}/{name} is not a valid key: {error}", err=True)
    if not records:
        click.echo(f"no API keys in namespace {namespace}", err=True)
        return
    click.echo(format_table(records))


def format_table(records: list[ApiKeyRecord]) -> str:
    """The table ``keys list`` prints: id, tenant, concurrency, creation time (UTC), oldest first."""
    rows = [("KEY ID", "TENANT", "CONCURRENCY", "CREATED")]
    ordered = sorted(records, key=lambda record: (record.created is None, record.created, record.key_id))
    for record in ordered:
        created = rfc3339(record.created) if record.created else "-"
        rows.append((record.key_id, record.tenant, str(record.concurrency), created))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


@keys.command()
@click.argument("key_id")
@namespace_option
def revoke(key_id: str, namespace: str) -> None:
    """Revoke a key by its id: delete its Secret; gateways refuse the key within seconds."""
    if not is_key_id(key_id):
        raise click.BadParameter(f"{key_id!r} is not a key id (12 lowercase hex digits)", param_hint="'KEY_ID'")
    name = secret_name(key_id)

    async def action(api: _Api) -> str | None:
        try:
            secret = api.plain(await api.kube.call(api.core.read_namespaced_secret(name, namespace)))
        except KubeError as error:
            if error.status == 404:
                return None
            raise
        metadata = metadata_of(secret)
        if (metadata.get("labels") or {}).get(API_KEY_LABEL) != "true":
            return None
        # Delete exactly the Secret read: a key created since under the same id is left alone.
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=metadata.get("uid")))
        try:
            await api.kube.call(api.core.delete_namespaced_secret(name, namespace, body=options))
        except KubeError as error:
            if error.status in (404, 409):
                return None
            raise
        return str((metadata.get("labels") or {}).get(TENANT_LABEL) or "?")

    tenant = _run(action)
    if tenant is None:
        raise click.ClickException(f"no API key with id {key_id} in namespace {namespace}")
    click.echo(f"revoked API key {key_id} of tenant {tenant}")
