"""The PostgreSQL, InfluxDB and Redis the tests run against (environment
variables may point elsewhere), and fresh uniquely named resources on them.
Every resource a test creates gets a unique name and is removed afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get(
    "TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
INFLUX_URL = os.environ.get("TEST_INFLUX_URL", "http://127.0.0.1:8086")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextmanager
def fresh_pg_database(prefix: str = "notify_test") -> Iterator[str]:
    """The URL of a new PostgreSQL database, dropped (connections and all) on exit."""
    name = unique(prefix)
    # pre-ping: a test may restart PostgreSQL, which cuts this engine's connection
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
