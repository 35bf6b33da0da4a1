"""Bringing a database's schema to the newest revision: Alembic's
``upgrade head``, run from here (``python -m service migrate``, and first
thing in ``serve`` and ``jobs``), never as a side effect of building the app.

One process at a time: the whole run is one transaction that first takes a
lock (an advisory lock on PostgreSQL: nodes starting together on a fresh
database would race on CREATE TABLE, and the loser fails on pg_type's unique
index; ``BEGIN IMMEDIATE`` on SQLite, where ``make run`` starts ``serve`` and
``jobs`` together). Whoever comes second finds the schema at head and does
nothing.

A database made by ``create_all``, before there were migrations, has the
tables and no ``alembic_version``: it is adopted rather than refused. Its
tables and columns must be those of the first revision (else
``SchemaMismatch``, and nothing is changed); indexes that differ are left as
they are, with a warning, as ``create_all`` left them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, inspect, text

from service.adapters.notification_log import storage_errors
from service.adapters.tables import metadata

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
FIRST_REVISION = "0001"  # the schema create_all made
# index and constraint differences an adopted database may keep (docs/operations.md)
_TOLERATED = frozenset({"add_index", "remove_index", "add_constraint", "remove_constraint"})


class SchemaMismatch(Exception):
    """A database without ``alembic_version`` whose tables are not the first
    revision's: not made by this service, or changed by hand."""


def migrate(engine: Engine) -> str:
    """Upgrade the schema to head (adopting a database ``create_all`` made);
    return the revision it is at. Idempotent."""
    with storage_errors(), engine.connect() as conn:
        _lock(conn)
        before = MigrationContext.configure(conn).get_current_revision()
        if before is None:
            _check_adoptable(conn)
        command.upgrade(_config(conn), "head")
        revision = current_revision(conn)
        conn.commit()
    if revision != before:
        log.info("database schema upgraded from revision %s to %s", before or "none", revision)
    return revision


def current_revision(conn: Connection) -> str:
    return MigrationContext.configure(conn).get_current_revision() or "none"


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None, "no migrations"
    return head


def service_tables_only(tables: MetaData) -> Callable[..., bool]:
    """An ``include_name`` hook: only these tables (an old database also holds
    the earlier schema's ``messages``, ``streams``, ``entries``)."""
    def include(name: str | None, type_: str, _parent: Any) -> bool:
        return type_ != "table" or name in tables.tables

    return include


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('notify_schema'))"))
    else:  # the write lock now, before reading the version: another process may share the file
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn  # env.py runs on this connection, under the lock
    config.attributes["include_name"] = service_tables_only(metadata)
    return config


def _check_adoptable(conn: Connection) -> None:
    """Raise ``SchemaMismatch`` unless the tables present are the first
    revision's (an empty database passes: every table is missing)."""
    if not set(inspect(conn).get_table_names()) & set(metadata.tables):
        return
    first = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(FIRST_REVISION)
    assert first is not None and first.module is not None
    first_tables: MetaData = first.module.metadata
    context = MigrationContext.configure(
        conn, opts={"include_name": service_tables_only(first_tables)})
    differences = []
    for diff in compare_metadata(context, first_tables):
        kind = (diff[0] if isinstance(diff, list) else diff)[0]
        if kind == "add_table":
            continue  # a start that stopped half-way: the first revision creates it
        if kind in _TOLERATED:
            log.warning("adopted database keeps a different index: %s", diff)
            continue
        differences.append(diff)
    if differences:
        raise SchemaMismatch(
            "the database has the service's tables but no alembic_version, and they are not "
            f"the first revision's: {differences}")
    log.info("adopting a database made before migrations: revision %s", FIRST_REVISION)
