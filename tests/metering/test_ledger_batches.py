"""The ledger's batch insert on SQLite and PostgreSQL: the rows read back are the records, whatever path wrote them."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from harness import STARTED, records
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from modelcluster.gateway.metering.ledger import (
    ROW_COLUMNS,
    SQLITE_ROWS_PER_STATEMENT,
    InsertStatement,
    Ledger,
    create_engine,
)
from modelcluster.gateway.metering.metrics import MeteringMetrics
from modelcluster.gateway.metering.migrate import upgrade
from modelcluster.gateway.metering.records import MAX_TOKENS, UsageDraft, UsageRecord, request_id
from modelcluster.gateway.metering.schema import usage


async def written(url: str, batch: list[UsageRecord]) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    await upgrade(engine)
    ledger = Ledger(engine, MeteringMetrics(CollectorRegistry()), batch_size=len(batch) + 1)
    ledger.migrated = True
    try:
        for record in batch:
            assert ledger.record(record)
        assert await ledger.flush_batch()
        # The same rows again (a batch sent twice after an uncertain failure) add nothing.
        for record in batch:
            ledger.record(record)
        assert await ledger.flush_batch()
        async with engine.connect() as connection:
            found = (await connection.execute(select(*(usage.c[name] for name in ROW_COLUMNS)))).all()
    finally:
        await engine.dispose()
    return sorted(tuple(row) for row in found)


def expected(batch: list[UsageRecord]) -> list[tuple[object, ...]]:
    return sorted(record.values() for record in batch)


def naive(rows: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    """SQLite keeps no time zone: compare its times as UTC wall-clock times."""
    position = ROW_COLUMNS.index("started")
    return [
        tuple(value.replace(tzinfo=None) if index == position else value for index, value in enumerate(row))  # type: ignore[attr-defined]
        for row in rows
    ]


@pytest.mark.parametrize("count", [1, 3, 500])
async def test_a_batch_reads_back_as_its_records(ledger_url: str, count: int) -> None:
    batch = records(count)
    found = await written(ledger_url, batch)
    if ledger_url.startswith("sqlite"):
        assert naive(found) == naive(expected(batch))
    else:
        assert found == expected(batch)


async def sqlite_statement() -> InsertStatement:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.connect() as connection:
            return InsertStatement.compile(connection.dialect)
    finally:
        await engine.dispose()


async def test_sqlite_writes_a_batch_in_one_statement() -> None:
    statement = await sqlite_statement()
    [(sql, arguments)] = statement.statements(records(500))
    assert sql.count("(?, ") == 500 and sql.endswith("ON CONFLICT (request_id) DO NOTHING")
    assert isinstance(arguments, tuple) and len(arguments) == 500 * len(ROW_COLUMNS)


@pytest.mark.parametrize(("count", "statements"), [(1, 1), (SQLITE_ROWS_PER_STATEMENT, 1), (2500, 3)])
async def test_a_large_batch_is_cut_into_statements_sqlite_can_bind(count: int, statements: int) -> None:
    cut = (await sqlite_statement()).statements(records(count))
    assert len(cut) == statements
    assert sum(len(arguments) for _, arguments in cut) == count * len(ROW_COLUMNS)


async def test_postgresql_takes_a_batch_row_by_row(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            statement = InsertStatement.compile(connection.dialect)
    finally:
        await engine.dispose()
    [(sql, arguments)] = statement.statements(records(3))
    assert sql == statement.sql and len(arguments) == 3


def test_request_ids_are_unique_sort_by_time_and_keep_their_shape() -> None:
    first, later = STARTED, STARTED + timedelta(milliseconds=1)
    ids = [request_id(first) for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in ids)
    assert max(ids) < request_id(later)
    assert int(ids[0][:12], 16) == int(first.timestamp() * 1000)


async def test_a_peers_huge_token_count_is_kept_at_the_bound_and_written(ledger_url: str) -> None:
    draft = UsageDraft(request_id(STARTED), STARTED, 0.0, model="m", tokens_in=10**30, tokens_out=2**40)
    record = draft.record("acme", "key-1", 200, 0.01)
    assert (record.tokens_in, record.tokens_out) == (MAX_TOKENS, MAX_TOKENS)
    [row] = await written(ledger_url, [record])
    assert row[ROW_COLUMNS.index("tokens_in")] == MAX_TOKENS


async def test_a_text_longer_than_its_column_is_cut_and_written(ledger_url: str) -> None:
    draft = UsageDraft(request_id(STARTED), STARTED, 0.0, model="anthropic/" + "x" * 5000, task="t" * 100)
    [row] = await written(ledger_url, [draft.record("acme", "key-" + "k" * 100, 200, 0.01)])
    assert row[ROW_COLUMNS.index("model")] == ("anthropic/" + "x" * 5000)[:256]
    assert len(row[ROW_COLUMNS.index("task")]) == 64 and len(row[ROW_COLUMNS.index("key_id")]) == 64


async def test_a_row_the_database_refuses_is_dropped_and_counted_and_holds_back_no_other(postgres_url: str) -> None:
    """PostgreSQL refuses a NUL in a text column: that row alone is dropped; the batch's others and the next
    batch are written."""
    batch = records(5)
    bad = UsageDraft(request_id(STARTED), STARTED, 0.0, model="broken\x00model").record("acme", "key-1", 200, 0.01)
    batch.insert(2, bad)
    engine = create_engine(postgres_url)
    await upgrade(engine)
    metrics = MeteringMetrics(CollectorRegistry())
    committed: list[str] = []
    ledger = Ledger(engine, metrics, batch_size=10, on_commit=lambda rows: committed.extend(r.request_id for r in rows))
    ledger.migrated = True
    try:
        for record in batch:
            assert ledger.record(record)
        assert await ledger.flush_batch()
        assert ledger.buffered == 0
        after = [dataclasses.replace(record, request_id=f"after-{i}") for i, record in enumerate(records(3))]
        for record in after:
            ledger.record(record)
        assert await ledger.flush_batch()
        async with engine.connect() as connection:
            ids = set((await connection.execute(select(usage.c.request_id))).scalars())
    finally:
        await engine.dispose()
    good = {record.request_id for record in batch + after if record is not bad}
    assert ids == good and bad.request_id not in ids
    assert set(committed) == good
    assert metrics.ledger_rejected._value.get() == 1
    assert metrics.ledger_written._value.get() == len(good)
