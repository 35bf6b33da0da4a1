"""Alembic's environment script: it runs the migrations on the connection
that ``service.adapters.migrate`` hands it, inside the transaction that
holds that module's lock, and never opens a connection of its own."""

from __future__ import annotations

from alembic import context

from service.adapters.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations with `python -m service migrate`")
context.configure(connection=connection, target_metadata=metadata,
                  include_name=context.config.attributes.get("include_name"))
with context.begin_transaction():
    context.run_migrations()
