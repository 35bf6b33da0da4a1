"""Engine construction for PostgreSQL and the embedded SQLite default."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from service.adapters.db_metrics import TimedQueuePool
from service.domain.levels import PoolSettings


def make_engine(url: str, *, pool_size: int = 10, pool: PoolSettings | None = None,
                poolclass: type[QueuePool] = TimedQueuePool) -> Engine:
    """Create an engine; nothing connects until the first query. ``poolclass``
    is SQLAlchemy's own QueuePool where the pool patch is left out
    (service.adapters.patches.pool_checkout.pool_class)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, poolclass)
    pool = pool or PoolSettings(pool_size, pool_size)
    return create_engine(
        url,
        poolclass=poolclass,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout_s,
        pool_pre_ping=pool.pre_ping,
        # psycopg2 connect_timeout keeps a dead server from hanging a publish
        connect_args={"connect_timeout": 3},
    )


def _sqlite_engine(url: str, database: str | None, poolclass: type[QueuePool]) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # One connection, shared by every greenlet in turn: SQLite serialises
    # writers anyway, and a single connection avoids SQLITE_BUSY under gevent.
    engine = create_engine(
        url,
        poolclass=poolclass,
        pool_size=1,
        max_overflow=0,
        pool_timeout=30,
        connect_args={"check_same_thread": False, "timeout": 30},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001 - DB-API callback
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def default_sqlite_url(var_dir: str | os.PathLike) -> str:
    return f"sqlite:///{Path(var_dir).resolve() / 'notify.sqlite3'}"
