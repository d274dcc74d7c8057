"""The SQLite ledger's writes on the event loop: never waiting for a lock, checkpoints on their own thread, a
cancelled batch rolled back, and a batch that found the database locked written once it is free."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
from harness import records
from prometheus_client import CollectorRegistry
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from modelcluster.gateway.metering.ledger import InsertStatement, Ledger, create_engine
from modelcluster.gateway.metering.metrics import MeteringMetrics
from modelcluster.gateway.metering.migrate import upgrade
from modelcluster.gateway.metering.schema import usage
from modelcluster.gateway.metering.sqlite_writer import SqliteBatchWriter, sqlite_file

from support import eventually_async


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite+aiosqlite:////var/lib/modelcluster/usage.sqlite", "/var/lib/modelcluster/usage.sqlite"),
        ("sqlite+aiosqlite:///usage.sqlite", "usage.sqlite"),
        ("sqlite+aiosqlite:///:memory:", None),
        ("sqlite+aiosqlite://", None),
        ("postgresql+asyncpg://u@db/usage", None),
    ],
)
def test_only_an_sqlite_file_takes_the_loops_writer(url: str, path: str | None) -> None:
    assert sqlite_file(make_url(url)) == path


async def migrated(tmp_path: Path) -> tuple[str, InsertStatement]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'usage.sqlite'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        return str(tmp_path / "usage.sqlite"), InsertStatement.compile(engine.dialect)
    finally:
        await engine.dispose()


def rows_in(path: str) -> int:
    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM usage").fetchone()[0])


def size(path: str) -> int:
    return Path(path).stat().st_size


async def test_commits_leave_the_checkpoints_to_the_thread(tmp_path: Path) -> None:
    path, statement = await migrated(tmp_path)
    migrated_size = size(path)
    batch = records(15_000)  # a WAL of more than SQLite's 1,000 pages, past which a commit would checkpoint
    lazy = SqliteBatchWriter(path, checkpoint_rows=10**9)
    try:
        for first in range(0, len(batch), 1000):
            await lazy.write(statement.statements(batch[first : first + 1000]), 1000)
        assert size(path) == migrated_size  # no commit copied the WAL into the file
        assert size(path + "-wal") > 1000 * 4096
    finally:
        await lazy.close()
    eager = SqliteBatchWriter(path, checkpoint_rows=100)
    try:
        await eager.write(statement.statements([replace(batch[0], request_id="one-more")]), 100)
        await eventually_async(lambda: size(path) > migrated_size, within=10, what="a checkpoint on the thread")
    finally:
        await eager.close()
    assert rows_in(path) == len(batch) + 1


async def test_a_locked_database_fails_the_batch_at_once_and_it_is_written_when_free(tmp_path: Path) -> None:
    path, _ = await migrated(tmp_path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    metrics = MeteringMetrics(CollectorRegistry())
    ledger = Ledger(engine, metrics, batch_size=50, flush_interval_s=0.05)
    ledger.migrated = True
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        for record in records(50):
            assert ledger.record(record)
        started = time.monotonic()
        assert not await ledger.flush_batch()
        assert time.monotonic() - started < 1.0  # refused, not waited for
        assert ledger.buffered == 50 and metrics.ledger_errors._value.get() == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    ledger.start()
    try:
        await eventually_async(lambda: ledger.buffered == 0, within=10, what="the batch written")
    finally:
        await ledger.stop()
    assert rows_in(path) == 50


async def test_a_batch_cancelled_between_statements_is_rolled_back(tmp_path: Path) -> None:
    path, statement = await migrated(tmp_path)
    writer = SqliteBatchWriter(path)
    try:
        two = statement.statements(records(1500))
        assert len(two) == 2
        task = asyncio.create_task(writer.write(two, 1500))
        await asyncio.sleep(0)  # the task runs the first statement, then yields before the second
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rows_in(path) == 0
        await writer.write(statement.statements(records(3)), 3)  # the connection is out of the transaction
    finally:
        await writer.close()
    assert rows_in(path) == 3


async def test_rows_written_on_the_loop_read_back_through_the_engine(tmp_path: Path) -> None:
    path, statement = await migrated(tmp_path)
    writer = SqliteBatchWriter(path)
    try:
        await writer.write(statement.statements(records(20)), 20)
    finally:
        await writer.close()
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(select(func.count()).select_from(usage))).scalar_one() == 20
    finally:
        await engine.dispose()
