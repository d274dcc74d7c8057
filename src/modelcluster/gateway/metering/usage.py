"""Usage reads: ``GET /models/v2/usage?start=&end=&groupBy=model|key|day`` for the caller's tenant, and the
admin's ``modelcluster usage``; the query's parameters checked by :func:`usage_query` (422 on bad ones)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from modelcluster.api.errors import InputError
from modelcluster.gateway.metering.schema import usage

GroupBy = Literal["model", "key", "day", "tenant"]
TENANT_GROUPS: tuple[GroupBy, ...] = ("model", "key", "day")
DEFAULT_RANGE = timedelta(days=30)
MAX_RANGE = timedelta(days=366)
#: The moments a query may name: a range's default start (30 days before its end) stays a date, too.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class UsageQuery:
    start: datetime
    end: datetime
    group_by: GroupBy


def parse_moment(value: str, name: str) -> datetime:
    """An RFC 3339 time or a date (midnight UTC), from 1970 to 9998; a time without an offset is UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        raise InputError(f"{name}: {value!r} is not a date (YYYY-MM-DD) or an RFC 3339 time", param=name) from None
    except OverflowError:  # an offset that moves the time out of the years a date can hold
        moment = EARLIEST - timedelta(days=1)
    if not EARLIEST <= moment <= LATEST:
        raise InputError(f"{name}: {value[:40]!r} is not between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}", param=name)
    return moment


def usage_query(params: Mapping[str, str], now: datetime, groups: tuple[GroupBy, ...] = TENANT_GROUPS) -> UsageQuery:
    """The query of ``params`` (``start``, ``end``, ``groupBy``): the last 30 days by model by default."""
    unknown = sorted(set(params) - {"start", "end", "groupBy"})
    if unknown:
        raise InputError(f"unknown query parameters: {', '.join(unknown)}; expected start, end, groupBy")
    end = parse_moment(params["end"], "end") if "end" in params else now
    start = parse_moment(params["start"], "start") if "start" in params else end - DEFAULT_RANGE
    if start >= end:
        raise InputError("start must be before end", param="start")
    if end - start > MAX_RANGE:
        raise InputError(f"the range may span at most {MAX_RANGE.days} days", param="end")
    group_by = params.get("groupBy", "model")
    if group_by not in groups:
        raise InputError(f"groupBy must be one of {', '.join(groups)}, got {group_by!r}", param="groupBy")
    return UsageQuery(start, end, group_by)


async def read_usage(engine: AsyncEngine, query: UsageQuery, tenant: str | None) -> list[dict[str, Any]]:
    """The usage of ``tenant`` (every tenant when ``None``) in the query's range, grouped, by cost first."""
    columns = {"model": usage.c.model, "key": usage.c.key_id, "tenant": usage.c.tenant}
    group: ColumnElement[Any]
    if query.group_by == "day":
        group = func.substr(func.cast(usage.c.started, usage.c.request_id.type), 1, 10)
        if engine.dialect.name == "postgresql":
            group = func.to_char(func.timezone("UTC", usage.c.started), "YYYY-MM-DD")
    else:
        group = columns[query.group_by]
    label = group.label("group")
    statement = select(
        label,
        func.count().label("requests"),
        func.coalesce(func.sum(usage.c.inference_seconds), 0.0),
        func.coalesce(func.sum(usage.c.tokens_in), 0),
        func.coalesce(func.sum(usage.c.tokens_out), 0),
        func.coalesce(func.sum(usage.c.cost), 0.0),
    ).where(usage.c.started >= query.start, usage.c.started < query.end)
    if tenant is not None:
        statement = statement.where(usage.c.tenant == tenant)
    statement = statement.group_by(label).order_by(label)
    async with engine.connect() as connection:
        rows = (await connection.execute(statement)).all()
    return [
        {
            query.group_by: value,
            "requests": int(requests),
            "inferenceSeconds": float(seconds),
            "tokensIn": int(tokens_in),
            "tokensOut": int(tokens_out),
            "cost": float(cost),
        }
        for value, requests, seconds, tokens_in, tokens_out, cost in rows
    ]
