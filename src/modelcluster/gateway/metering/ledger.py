"""The usage ledger: rows recorded on the request path into a bounded buffer, written in batches by a task.

:meth:`Ledger.record` never waits and never fails: it appends the row, or counts it dropped when the buffer is
full (the database has been away for long). The writer inserts batches with ``ON CONFLICT (request_id) DO
NOTHING``, so a batch sent again after an uncertain failure never doubles a row; a failed write is retried with
a backoff while requests go on being answered. :meth:`Ledger.stop` (on SIGTERM, after the last answer) writes
what is left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import operator
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import String, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from modelcluster.gateway.metering.metrics import MeteringMetrics
from modelcluster.gateway.metering.migrate import upgrade
from modelcluster.gateway.metering.records import UsageRecord
from modelcluster.gateway.metering.schema import usage
from modelcluster.gateway.metering.sqlite_writer import SqliteBatchWriter, sqlite_file

logger = logging.getLogger(__name__)

#: What a database that is away raises from a write.
DATABASE_ERRORS = (SQLAlchemyError, sqlite3.Error, OSError, TimeoutError)
#: SQLSTATE classes of a refusal of the rows themselves: data exception (22), integrity constraint (23).
DATA_SQLSTATE_CLASSES = ("22", "23")


def refused_for_data(error: BaseException) -> bool:
    """Whether the database refused the rows themselves (no retry of the same rows can change that), not the
    connection or the moment (away, locked, slow)."""
    if isinstance(error, DataError | IntegrityError | sqlite3.DataError | sqlite3.IntegrityError):
        return True
    if isinstance(error, DBAPIError):
        code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
        return isinstance(code, str) and code[:2] in DATA_SQLSTATE_CLASSES
    return False


DROP_LOG_INTERVAL_S = 10.0


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``).

    An SQLite file gets its directory made, WAL journaling and a busy timeout, and one connection.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = not parsed.database or parsed.database == ":memory:"
        if not in_memory:
            Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
        # One connection: the writer, the spend reads and the usage reads of one gateway take turns on it (a
        # database in memory has one by its nature: SQLAlchemy's static pool).
        pool: dict[str, int] = {} if in_memory else {"pool_size": 1, "max_overflow": 0}
        engine = create_async_engine(parsed, connect_args={"timeout": 30}, **pool)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(connection: Any, record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_async_engine(parsed, pool_pre_ping=True, pool_size=5, max_overflow=5)


def _insert(dialect: str) -> Any:
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(usage).on_conflict_do_nothing(index_elements=["request_id"])


#: The columns a usage row fills, in :meth:`UsageRecord.values` order.
ROW_COLUMNS = tuple(field.name for field in dataclasses.fields(UsageRecord))


#: Rows per SQLite statement: 15 parameters each stays far below SQLite's 32,766 bound variables.
SQLITE_ROWS_PER_STATEMENT = 1000


@dataclass(frozen=True)
class InsertStatement:
    """The batch insert compiled once for a dialect: its SQL, and per column the driver value of a record's value.

    Rows go to the driver as tuples: the same statement, the same column types' conversions, without SQLAlchemy
    building and processing a parameter dictionary per row (most of a row's CPU in the gateway).

    On SQLite a batch is one multi-row ``VALUES`` statement (:meth:`statements`) per 1,000 rows, which the
    event loop runs itself (:mod:`.sqlite_writer`); PostgreSQL's driver runs in the event loop and pipelines an
    ``executemany`` itself.
    """

    sql: str
    order: tuple[int, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    #: Per text column with a length, its position and length: a longer text (a closed model's id as a caller
    #: spelled it) would fail its whole batch on PostgreSQL again and again; cut, the row is written.
    lengths: tuple[tuple[int, int], ...] = ()
    #: SQLite: the statement's text before and after its one row of placeholders.
    values_split: tuple[str, str, str] | None = None

    @classmethod
    def compile(cls, dialect: Dialect) -> InsertStatement:
        compiled = _insert(dialect.name).compile(dialect=dialect, column_keys=list(ROW_COLUMNS))
        positions = list(compiled.positiontup or [])
        if sorted(positions) != sorted(ROW_COLUMNS):
            raise RuntimeError(f"the {dialect.name} insert of the ledger binds {positions}, not {ROW_COLUMNS}")
        processors = tuple(usage.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in positions)
        order = tuple(ROW_COLUMNS.index(name) for name in positions)
        lengths = tuple(
            (position, kind.length)
            for position, kind in enumerate(usage.c[name].type for name in positions)
            if isinstance(kind, String) and kind.length
        )
        return cls(compiled.string, order, processors, lengths, _values_split(compiled.string, len(positions), dialect))

    def parameters(self, records: Sequence[UsageRecord]) -> list[tuple[Any, ...]]:
        """One tuple per record, in the order :attr:`sql` binds them."""
        pick = operator.itemgetter(*self.order)
        converted = [(position, process) for position, process in enumerate(self.processors) if process is not None]
        lengths = self.lengths
        rows = []
        for record in records:
            row = list(pick(record.values()))
            for position, length in lengths:
                if len(row[position]) > length:
                    row[position] = row[position][:length]
            for position, process in converted:
                row[position] = process(row[position])
            rows.append(tuple(row))
        return rows

    def statements(self, records: Sequence[UsageRecord]) -> list[tuple[str, Any]]:
        """The SQL and driver arguments that insert ``records``: multi-row statements where the dialect takes them."""
        rows = self.parameters(records)
        if self.values_split is None:
            return [(self.sql, rows)]
        head, row, tail = self.values_split
        statements: list[tuple[str, Any]] = []
        for first in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
            chunk = rows[first : first + SQLITE_ROWS_PER_STATEMENT]
            flat = tuple(value for values in chunk for value in values)
            statements.append((f"{head}{', '.join([row] * len(chunk))}{tail}", flat))
        return statements


def _values_split(sql: str, columns: int, dialect: Dialect) -> tuple[str, str, str] | None:
    """SQLite's single-row insert cut around its ``VALUES`` row, so that it can carry many; ``None`` elsewhere."""
    if dialect.name != "sqlite":
        return None
    row = "(" + ", ".join(["?"] * columns) + ")"
    head, found, tail = sql.partition(f" VALUES {row}")
    if not found or row in tail:
        raise RuntimeError(f"the sqlite insert of the ledger has no single VALUES row: {sql}")
    return f"{head} VALUES ", row, tail


class Ledger:
    def __init__(
        self,
        engine: AsyncEngine,
        metrics: MeteringMetrics,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.5,
        buffer_limit: int = 100_000,
        write_timeout_s: float = 10.0,
        on_commit: Callable[[Sequence[UsageRecord]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.buffer_limit = buffer_limit
        self.write_timeout_s = write_timeout_s
        self.on_commit = on_commit
        self.migrated = False
        self._buffer: deque[UsageRecord] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        self._dropped_unlogged = 0
        self._last_drop_log = 0.0
        self._statement: InsertStatement | None = None
        # An SQLite file takes its batches on a connection and thread of their own (see sqlite_writer).
        path = sqlite_file(engine.url)
        self._sqlite = SqliteBatchWriter(path) if path is not None else None
        # Read when scraped, not set per row.
        metrics.ledger_buffered.set_function(lambda: len(self._buffer))

    @property
    def write_lock(self) -> asyncio.Lock:
        """Held while a batch is written (and by the spend reads, so that none commits during one)."""
        return self._write_lock

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def record(self, record: UsageRecord) -> bool:
        """Queue ``record`` for the database; ``False`` when the buffer is full and it was dropped (counted)."""
        if len(self._buffer) >= self.buffer_limit:
            self.metrics.ledger_dropped.inc()
            self._dropped_unlogged += 1
            now = time.monotonic()
            if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
                logger.error(
                    "usage ledger buffer full (%d rows, database away): dropped %d usage rows",
                    self.buffer_limit,
                    self._dropped_unlogged,
                )
                self._dropped_unlogged, self._last_drop_log = 0, now
            return False
        self._buffer.append(record)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-ledger")

    async def stop(self, deadline_s: float = 20.0) -> None:
        """Stop the writer and write every buffered row (until ``deadline_s``, then log what is lost)."""
        deadline = time.monotonic() + deadline_s
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            # The writer ends after the batch it is writing (cancelling a write midway can wedge a connection).
            done, _ = await asyncio.wait({self._task}, timeout=deadline_s / 2)
            if not done:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        delay = 0.1
        while self._buffer and time.monotonic() < deadline:
            if not self.migrated and not await self._migrate():
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)
                continue
            if not await self.flush_batch():
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)
        if self._buffer:
            logger.error("usage ledger: %d rows not written at shutdown (database away)", len(self._buffer))
        if self._sqlite is not None:
            await self._sqlite.close()
        await self.engine.dispose()

    async def _migrate(self) -> bool:
        try:
            async with asyncio.timeout(max(self.write_timeout_s, 30.0)):
                await upgrade(self.engine)
        except DATABASE_ERRORS as error:
            logger.warning("usage ledger: cannot migrate the database yet: %s", _short(error))
            return False
        self.migrated = True
        return True

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the ledger is stopping."""
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            pass

    async def _run(self) -> None:
        delay = 0.2
        while not self.migrated and not self._stopping.is_set():
            if not await self._migrate():
                await self._pause(delay)
                delay = min(delay * 2, 2.0)
        delay = 0.2
        while not self._stopping.is_set():
            if len(self._buffer) < self.batch_size:
                try:
                    async with asyncio.timeout(self.flush_interval_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            while self._buffer and not self._stopping.is_set():
                if await self.flush_batch():
                    delay = 0.2
                    continue
                await self._pause(delay)
                delay = min(delay * 2, 2.0)

    async def flush_batch(self) -> bool:
        """Write the oldest batch; ``True`` when written (or nothing was buffered).

        A batch the database refuses for its data (a row it cannot hold) is written row by row instead: the
        rows it takes are kept, a row it refuses is dropped and counted, and the rows after it are not held
        back. A batch refused for anything else (the database away, locked, slow) stays for the next try.
        """
        async with self._write_lock:
            batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
            if not batch:
                return True
            try:
                await self._write(batch)
            except DATABASE_ERRORS as error:
                if refused_for_data(error):
                    logger.warning("usage ledger: a row of %d was refused (%s); writing them one by one",
                                   len(batch), _short(error))  # fmt: skip
                    return await self._write_one_by_one(batch)
                self.metrics.ledger_errors.inc()
                logger.warning("usage ledger: writing %d rows failed, retrying: %s", len(batch), _short(error))
                return False
            self._written(batch)
            return True

    async def _write(self, batch: Sequence[UsageRecord]) -> None:
        if self._statement is None:
            self._statement = InsertStatement.compile(self.engine.dialect)
        async with asyncio.timeout(self.write_timeout_s):
            if self._sqlite is not None:
                await self._sqlite.write(self._statement.statements(batch), len(batch))
            else:
                async with self.engine.begin() as connection:
                    for sql, arguments in self._statement.statements(batch):
                        await connection.exec_driver_sql(sql, arguments)

    async def _write_one_by_one(self, batch: Sequence[UsageRecord]) -> bool:
        for record in batch:
            try:
                await self._write([record])
            except DATABASE_ERRORS as error:
                if refused_for_data(error):
                    self._buffer.popleft()
                    self.metrics.ledger_rejected.inc()
                    logger.error("usage ledger: row %s (tenant %s, model %r) refused and dropped: %s",
                                 record.request_id, record.tenant, record.model[:80], _short(error))  # fmt: skip
                    continue
                self.metrics.ledger_errors.inc()
                logger.warning("usage ledger: writing a row failed, retrying: %s", _short(error))
                return False
            self._written([record])
        return True

    def _written(self, batch: Sequence[UsageRecord]) -> None:
        for _ in batch:
            self._buffer.popleft()
        self.metrics.ledger_written.inc(len(batch))
        if self.on_commit is not None:
            self.on_commit(batch)


def _short(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]
