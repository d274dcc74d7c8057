"""The ledger's table (SQLAlchemy Core); its migrations live in ``migrations/``."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Float, Index, Integer, MetaData, String, Table

metadata = MetaData()

usage = Table(
    "usage",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, unique=True),
    Column("tenant", String(253), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("model", String(256), nullable=False),
    Column("task", String(64), nullable=False),
    Column("cluster", String(320), nullable=False),
    Column("meter", String(64), nullable=False),
    Column("meter_price", Float, nullable=False),
    Column("inference_seconds", Float, nullable=False),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("cost", Float, nullable=False),
    Column("status", Integer, nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("duration_seconds", Float, nullable=False),
    Index("ix_usage_tenant_started", "tenant", "started"),
)
