"""``modelcluster usage``: every tenant's usage (or one's) from the ledger, for admins; a table or JSON."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import click

from modelcluster.api.errors import InputError
from modelcluster.gateway.metering.ledger import DATABASE_ERRORS, create_engine
from modelcluster.gateway.metering.usage import UsageQuery, read_usage, usage_query
from modelcluster.gateway.settings import default_ledger_url

GROUPS = ("tenant", "model", "key", "day")
COLUMNS = ("requests", "inferenceSeconds", "tokensIn", "tokensOut", "cost")


@click.command()
@click.option("--tenant", help="One tenant only (default: every tenant).")
@click.option("--since", help="Start: a date (YYYY-MM-DD) or an RFC 3339 time (default: 30 days ago).")
@click.option("--until", help="End (default: now).")
@click.option("--group-by", type=click.Choice(GROUPS), default="tenant", show_default=True)
@click.option(
    "--ledger-url",
    envvar="MODELCLUSTER_GATEWAY_LEDGER_URL",
    default=default_ledger_url,
    show_default="the gateway's default SQLite file",
    help="The ledger's database, as the gateway's MODELCLUSTER_GATEWAY_LEDGER_URL.",
)
@click.option("-o", "--output", type=click.Choice(("table", "json")), default="table", show_default=True)
def usage(
    tenant: str | None, since: str | None, until: str | None, group_by: str, ledger_url: str, output: str
) -> None:
    """Usage by tenant, model, key or day: requests, inference seconds, tokens and cost."""
    params = {name: value for name, value in (("start", since), ("end", until), ("groupBy", group_by)) if value}
    try:
        query = usage_query(params, datetime.now(UTC), groups=GROUPS)  # type: ignore[arg-type]
    except InputError as error:
        raise click.BadParameter(error.message) from error
    try:
        rows = asyncio.run(_read(ledger_url, query, tenant))
    except DATABASE_ERRORS as error:
        raise click.ClickException(f"cannot read the ledger: {str(error).splitlines()[0]}") from error
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(_table(group_by, rows))


async def _read(url: str, query: UsageQuery, tenant: str | None) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        return await read_usage(engine, query, tenant)
    finally:
        await engine.dispose()


def _table(group_by: str, rows: list[dict[str, Any]]) -> str:
    header = (group_by.upper(), "REQUESTS", "INFERENCE S", "TOKENS IN", "TOKENS OUT", "COST $")
    lines = [header] + [
        (
            str(row[group_by]),
            str(row["requests"]),
            f"{row['inferenceSeconds']:.3f}",
            str(row["tokensIn"]),
            str(row["tokensOut"]),
            f"{row['cost']:.6f}",
        )
        for row in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip() for line in lines)
