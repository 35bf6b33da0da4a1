"""The database schema a test needs, made the way the service makes it:
``python -m service migrate`` (Alembic's upgrade to head).

A test that builds the app in-process (``create_app``) calls this first, as
``serve`` migrates before it builds: building runs no DDL."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from service.adapters.database import make_engine
from service.adapters.migrate import migrate


def create_test_schema(engine: Engine) -> str:
    """Every table of the service (notification log, publish keys, control
    log), at the newest revision; returns it."""
    return migrate(engine)


def migrate_url(database_url: str) -> str:
    """The same, for a database known by its URL (``DATABASE_URL``)."""
    engine = make_engine(database_url)
    try:
        return migrate(engine)
    finally:
        engine.dispose()
