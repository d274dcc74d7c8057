"""``GET /models/v2/usage``: the caller's tenant's usage, grouped by model, key or day."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from modelcluster.api.errors import Unavailable
from modelcluster.gateway.metering.http import METERING
from modelcluster.gateway.metering.ledger import DATABASE_ERRORS
from modelcluster.gateway.metering.usage import read_usage, usage_query
from modelcluster.gateway.request_keys import TENANT


async def usage(request: web.Request) -> web.Response:
    """Rows of the caller's tenant only: the tenant comes from the key, never from the query."""
    query = usage_query(request.query, datetime.now(UTC))
    ledger = request.app[METERING].ledger
    if ledger is None:
        raise Unavailable("this gateway keeps no usage ledger")
    try:
        rows = await read_usage(ledger.engine, query, request[TENANT])
    except DATABASE_ERRORS as error:
        raise Unavailable("the usage ledger cannot be read now; try again shortly", retry_after=5) from error
    output = {"start": _stamp(query.start), "end": _stamp(query.end), "groupBy": query.group_by, "usage": rows}
    return web.json_response({"error": None, "output": output})


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
