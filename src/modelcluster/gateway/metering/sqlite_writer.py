"""The ledger's batch writes to an SQLite file: on the event loop's own connection, checkpoints on a thread.

Through the async engine (aiosqlite) every call of a batch runs on the driver's thread, which must take the
interpreter lock back from the event loop each time SQLite hands control back. At full load the loop releases the
lock on every poll and takes it again at once, so the waiting thread is woken again and again before it wins it:
measured beside the gateway without a ledger (``benchmarks/gateway_overhead.py``), that churn cost about 40 µs of
the loop's CPU per request and 13 % of the maximum throughput. Writing the batch on the loop itself costs what the
rows cost (a batch of 500 rows holds the loop for about 2 ms, a statement of at most 1,000 rows at a time, with
other requests served between statements).

What could hold the loop longer is kept off it:

- **Locks.** The connection never waits for a lock (busy timeout 0): a batch that finds the database locked by
  another writer fails at once and is retried later, its rows kept in the buffer.
- **Checkpoints** (copying the WAL into the file, and the file's ``fsync``) are not run by the commits
  (``wal_autocheckpoint=0``); a thread of their own runs a passive checkpoint on its own connection after every
  :data:`CHECKPOINT_ROWS` rows written, which never blocks the writer.

The file is the one the async engine migrates and reads (WAL journaling: the reads of the spend and of the usage
never wait for a write, nor a write for them). A database in memory has one connection by its nature, so it keeps
the engine's path (:func:`sqlite_file` tells them apart).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import URL

logger = logging.getLogger(__name__)

#: Rows written between two checkpoints (about 1-2 MB of WAL).
CHECKPOINT_ROWS = 5_000


def sqlite_file(url: URL) -> str | None:
    """The file of an SQLite ``url``; ``None`` for another database or one in memory."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class SqliteBatchWriter:
    """Writes each batch in one transaction on a connection of the event loop's thread (opened on first use)."""

    def __init__(self, path: str, checkpoint_rows: int = CHECKPOINT_ROWS) -> None:
        self.path = path
        self.checkpoint_rows = checkpoint_rows
        self._connection: sqlite3.Connection | None = None
        self._since_checkpoint = 0
        self._checkpointer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-ledger-checkpoint")
        self._checkpoint_connection: sqlite3.Connection | None = None
        self._checkpoint: Future[None] | None = None

    async def write(self, statements: Sequence[tuple[str, Any]], rows: int) -> None:
        """Run ``statements`` (SQL and its arguments, ``rows`` rows in all) in one transaction and commit it.

        Raises :class:`sqlite3.Error` when the database refuses it (locked, full, unwritable); a cancellation
        between two statements rolls the batch back.
        """
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            for index, (sql, arguments) in enumerate(statements):
                if index:
                    await asyncio.sleep(0)  # other requests are served between two statements of a batch
                connection.execute(sql, arguments)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self._since_checkpoint += rows
        if self._since_checkpoint >= self.checkpoint_rows and (self._checkpoint is None or self._checkpoint.done()):
            self._since_checkpoint = 0
            self._checkpoint = self._checkpointer.submit(self._run_checkpoint)

    async def close(self) -> None:
        """Close the connection and wait for a checkpoint under way (SQLite's last connection checkpoints)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        await asyncio.get_running_loop().run_in_executor(self._checkpointer, self._close_checkpoints)
        self._checkpointer.shutdown(wait=True)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA wal_autocheckpoint=0")
        return connection

    def _run_checkpoint(self) -> None:
        try:
            if self._checkpoint_connection is None:
                self._checkpoint_connection = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            self._checkpoint_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:
            # The next one copies what this one did not; the WAL only grows meanwhile.
            logger.warning("usage ledger: checkpoint of %s failed: %s", self.path, error)

    def _close_checkpoints(self) -> None:
        if self._checkpoint_connection is not None:
            self._checkpoint_connection.close()
            self._checkpoint_connection = None
