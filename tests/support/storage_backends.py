"""The databases a contract suite runs a port's SQL implementation on: the
embedded SQLite default and real PostgreSQL, each fresh, with the service's
schema, removed when the test ends."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from service.adapters.database import make_engine
from tests.support.schema import create_test_schema

SQL_BACKENDS = ("sqlite", "postgresql")


def fresh_engine(request: pytest.FixtureRequest, backend: str) -> Engine:
    """An engine on a new database of ``backend`` (through the ``sqlite_url``
    and ``pg_url`` fixtures, which remove it), disposed of when the test ends."""
    url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    engine = make_engine(url)
    request.addfinalizer(engine.dispose)  # runs before the database is dropped
    create_test_schema(engine)
    return engine
