"""``modelcluster tenants``: create, list, change and delete Tenants (``modelcluster.api.tenant``).

A Tenant is a cluster-scoped object; the operator turns it into its namespace, a ResourceQuota and its
status, and the gateway checks its quotas on every cluster write. These commands write the object only,
checked first by the same models the apiserver's schema is generated from (so bad input changes nothing).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import click
from kubernetes_asyncio import client
from kubernetes_asyncio.config.config_exception import ConfigException
from pydantic import ValidationError

from modelcluster.api.tenancy import DEFAULT_KEY_NAMESPACE, name_refusal, tenant_refusal
from modelcluster.api.tenant import TenantSpec, tenant_body
from modelcluster.kube.client import Kube, KubeError, load_client_configuration

_T = TypeVar("_T")

#: CLI option -> the quota's field in ``spec.quotas``.
QUOTA_OPTIONS = {"model_clusters": "modelClusters", "replicas": "replicas", "gpus": "gpus", "pods": "pods"}
UNSETTABLE = ("model-clusters", "replicas", "gpus", "pods", "budget")


def _run(action: Callable[[Kube], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        try:
            configuration = await load_client_configuration()
        except ConfigException as error:
            raise click.ClickException(f"no Kubernetes configuration: {error}") from error
        async with client.ApiClient(configuration) as api_client:
            return await action(Kube(api_client))

    try:
        return asyncio.run(run())
    except KubeError as error:
        raise click.ClickException(f"the Kubernetes API failed: {error}") from error


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    return f"{location}: {first['msg']}" if location else str(first["msg"])


def _amount(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not a number (USD)", ctx=ctx, param=param) from None
    if not amount.is_finite() or amount < 0:
        raise click.BadParameter(f"{value!r} must be a non-negative amount (USD)", ctx=ctx, param=param)
    return amount


def quota_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``create`` and ``set``: each quota, and the budget."""
    count = click.IntRange(min=0)
    for option in reversed(
        (
            click.option("--model-clusters", type=count, help="ModelClusters in the namespace."),
            click.option("--replicas", type=count, help="Total replicas (the sum of capacity.max)."),
            click.option("--gpus", type=count, help="GPUs the namespace's pods may request."),
            click.option("--pods", type=count, help="Pods in the namespace."),
            click.option("--budget", callback=_amount, help="Spend allowed per period, in USD."),
            click.option(
                "--budget-period",
                type=click.Choice(["day", "week", "month"]),
                help="The budget's period (with --budget; default month on create).",
            ),
        )
    ):
        function = option(function)
    return function


def _quotas(options: dict[str, Any]) -> dict[str, int]:
    return {field: options[name] for name, field in QUOTA_OPTIONS.items() if options.get(name) is not None}


def build_spec(namespace: str | None, options: dict[str, Any]) -> TenantSpec:
    """The spec of a new Tenant from the options; :class:`click.BadParameter` when the models refuse it."""
    document: dict[str, Any] = {"quotas": _quotas(options)}
    if namespace is not None:
        document["namespace"] = namespace
    if options.get("budget") is not None:
        document["budget"] = {"amount": options["budget"], "period": options.get("budget_period") or "month"}
    elif options.get("budget_period") is not None:
        raise click.BadParameter("--budget-period needs --budget", param_hint="'--budget-period'")
    try:
        return TenantSpec.model_validate(document)
    except ValidationError as error:
        raise click.BadParameter(_first_error(error)) from None


def _refuse_system_namespace(namespace: str) -> None:
    why = tenant_refusal(namespace, DEFAULT_KEY_NAMESPACE)
    if why is not None:
        raise click.BadParameter(f"namespace {namespace} cannot be a tenant's: {why}", param_hint="'NAME/--namespace'")


@click.group()
def tenants() -> None:
    """Create, list, change and delete Tenants (namespace, quotas, budget)."""


@tenants.command()
@click.argument("name")
@click.option("--namespace", default=None, help="The tenant's namespace (default: NAME).")
@quota_options
def create(name: str, namespace: str | None, **options: Any) -> None:
    """Create the Tenant NAME; the operator makes its namespace and ResourceQuota."""
    shape = name_refusal(name)
    if shape is not None:
        raise click.BadParameter(f"{name!r}: {shape}", param_hint="'NAME'")
    spec = build_spec(namespace, options)
    _refuse_system_namespace(spec.namespace or name)
    body = tenant_body(name, spec)

    async def action(kube: Kube) -> None:
        try:
            await kube.create_tenant(body)
        except KubeError as error:
            if error.status == 409:
                raise click.ClickException(f"Tenant {name} exists; change it with `modelcluster tenants set`") from None
            raise

    _run(action)
    click.echo(f"created Tenant {name} (namespace {spec.namespace or name})")


@tenants.command(name="set")
@click.argument("name")
@quota_options
@click.option(
    "--unset",
    "unset",
    multiple=True,
    type=click.Choice(UNSETTABLE),
    help="Remove a quota (unbounded) or the budget (repeatable).",
)
def set_tenant(name: str, unset: tuple[str, ...], **options: Any) -> None:
    """Change quotas or the budget of the Tenant NAME (what is not named is kept)."""
    changes = _quotas(options)
    budget_given = options.get("budget") is not None or options.get("budget_period") is not None
    if not changes and not unset and not budget_given:
        raise click.UsageError("nothing to change: give a quota, --budget, --budget-period or --unset")

    async def action(kube: Kube) -> None:
        current = await kube.read_tenant(name)
        if current is None:
            raise click.ClickException(f"no Tenant {name}")
        await kube.patch_tenant(name, build_set_patch(current.get("spec") or {}, changes, unset, options))

    _run(action)
    click.echo(f"updated Tenant {name}")


def build_set_patch(
    current: dict[str, Any], changes: dict[str, int], unset: tuple[str, ...], options: dict[str, Any]
) -> dict[str, Any]:
    """The merge patch of ``tenants set``: the new quotas and budget, checked by the models first."""
    quotas = {**(current.get("quotas") or {}), **changes}
    for option in unset:
        if option != "budget":
            quotas.pop(QUOTA_OPTIONS[option.replace("-", "_")], None)
    budget = current.get("budget")
    if "budget" in unset:
        budget = None
    elif options.get("budget") is not None or options.get("budget_period") is not None:
        budget = dict(budget or {})
        if options.get("budget") is not None:
            budget["amount"] = options["budget"]
        budget["period"] = options.get("budget_period") or budget.get("period") or "month"
        if "amount" not in budget:
            raise click.BadParameter("the Tenant has no budget yet: give --budget", param_hint="'--budget'")
    document = {**current, "quotas": quotas, "budget": budget}
    try:
        spec = TenantSpec.model_validate({key: value for key, value in document.items() if value is not None})
    except ValidationError as error:
        raise click.BadParameter(_first_error(error)) from None
    wire = tenant_body("-", spec)["spec"]
    # A merge patch: null removes a quota (or the budget) that is no longer set.
    return {
        "spec": {
            "quotas": {field: (wire.get("quotas") or {}).get(field) for field in QUOTA_OPTIONS.values()},
            "budget": wire.get("budget"),
        }
    }


@tenants.command(name="list")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_tenants(output: str) -> None:
    """List the Tenants: namespace, readiness, quotas, use and budget."""
    items = _run(lambda kube: kube.list_tenant_objects())
    if output == "json":
        click.echo(json.dumps(items, indent=2, sort_keys=True))
        return
    if not items:
        click.echo("no Tenants", err=True)
        return
    click.echo(format_table(items))


def _ready(body: dict[str, Any]) -> tuple[str, str]:
    for condition in (body.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "-")), str(condition.get("reason", "-"))
    return "-", "-"


def _limit(used: Any, limit: Any) -> str:
    shown = "-" if limit is None else str(limit)
    return shown if used is None else f"{used}/{shown}"


def format_table(items: list[dict[str, Any]]) -> str:
    """The table ``tenants list`` prints, by name; quotas as used/limit where the ResourceQuota counted."""
    rows = [("NAME", "NAMESPACE", "READY", "REASON", "CLUSTERS", "REPLICAS", "GPUS", "PODS", "BUDGET")]
    for body in sorted(items, key=lambda item: str((item.get("metadata") or {}).get("name"))):
        name = str((body.get("metadata") or {}).get("name"))
        spec = body.get("spec") or {}
        quotas = spec.get("quotas") or {}
        used = (body.get("status") or {}).get("used") or {}
        budget = spec.get("budget")
        ready, reason = _ready(body)
        rows.append(
            (
                name,
                str(spec.get("namespace") or name),
                ready,
                reason,
                _limit(used.get("modelClusters"), quotas.get("modelClusters")),
                _limit(None, quotas.get("replicas")),
                _limit(used.get("gpus"), quotas.get("gpus")),
                _limit(used.get("pods"), quotas.get("pods")),
                f"{budget['amount']} USD/{budget['period']}" if budget else "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ("   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


@tenants.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete the Tenant NAME and its ResourceQuota; its namespace (and what runs there) is kept."""

    async def action(kube: Kube) -> bool:
        try:
            await kube.delete_tenant(name)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True

    if not _run(action):
        raise click.ClickException(f"no Tenant {name}")
    click.echo(f"deleted Tenant {name}; its namespace stays (delete it with kubectl to remove its workloads)")


async def ensure_tenant(kube: Kube, name: str) -> bool:
    """Create the Tenant ``name`` (namespace ``name``, no quota) unless it exists; whether it was created."""
    if await kube.read_tenant(name) is not None:
        return False
    try:
        await kube.create_tenant(tenant_body(name, TenantSpec()))
    except KubeError as error:
        if error.status == 409:
            return False
        if error.status == 404:
            return False  # no Tenant CRD installed: the labelled namespace is a tenant without quotas, as before
        raise
    return True
