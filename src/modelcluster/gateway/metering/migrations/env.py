"""Alembic's environment: migrations run on the connection :func:`modelcluster.gateway.metering.migrate.upgrade`
hands over (``config.attributes["connection"]``)."""

from __future__ import annotations

from alembic import context

from modelcluster.gateway.metering.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
