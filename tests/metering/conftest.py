"""The ledger's databases: an SQLite file and a real PostgreSQL server (started for the session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.postgres import PostgresServer, fresh_database, remove, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        remove(server)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'usage.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    return fresh_database(postgres)
