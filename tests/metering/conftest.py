"""The ledger's databases: an SQLite file and a real PostgreSQL server (started for the session)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.postgres import USER, PostgresServer, remove, start_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        remove(server)


def fresh_database(server: PostgresServer) -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    argv = [str(server.bin / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", USER, name]
    subprocess.run(argv, check=True, capture_output=True)
    return server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'usage.sqlite'}"
    return fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    return fresh_database(postgres)
