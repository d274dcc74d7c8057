"""Bringing a ledger database to the current schema with Alembic (``migrations/``), from an async engine.

Several gateway replicas may start at once on one PostgreSQL database: the upgrade runs under a transaction-level
advisory lock there, so one replica migrates and the others find the schema current.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
#: The advisory lock key of ledger migrations (any constant; "mcledger" in ASCII).
ADVISORY_LOCK = 0x6D636C6564676572


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Apply every migration the database lacks."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)
