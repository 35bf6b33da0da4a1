"""Fixtures that build on each other: database URL -> engine -> notification
log; InfluxDB client -> a fresh InfluxDB database. Every test resource gets a
unique name and is removed afterwards."""

from __future__ import annotations

import os
import uuid

import psycopg2.extensions
import pytest
from psycogreen.gevent import patch_psycopg
from sqlalchemy import create_engine, text

from service.adapters.database import make_engine
from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.notification_log import SqlNotificationLog, create_schema

PG_ADMIN_URL = os.environ.get(
    "TEST_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
INFLUX_URL = os.environ.get("TEST_INFLUX_URL", "http://127.0.0.1:8086")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database, dropped afterwards."""
    name = unique("notify_test")
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


@pytest.fixture
def cooperative_psycopg2():
    """Greenlets share the process only if psycopg2 waits through gevent."""
    patch_psycopg()
    yield
    psycopg2.extensions.set_wait_callback(None)


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'notify.sqlite3'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """The same test on the embedded default and on real PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def notification_log(engine):
    return SqlNotificationLog(engine)


@pytest.fixture
def influx_database():
    """A fresh InfluxDB database on the real server, dropped afterwards."""
    name = unique("notify_test")
    client = InfluxClient(InfluxSettings(url=INFLUX_URL, database=name))
    if not client.ping():
        pytest.fail(f"InfluxDB does not answer at {INFLUX_URL}: run scripts/influxdb.sh start")
    client.ensure_database()
    try:
        yield name
    finally:
        client.query(f'DROP DATABASE "{name}"', method="POST", db=None)


@pytest.fixture
def influx(influx_database):
    return InfluxClient(InfluxSettings(url=INFLUX_URL, database=influx_database))


@pytest.fixture
def private_influx(tmp_path):
    """An InfluxDB of this test's own, which the test may stop and restart."""
    from tests.influx_server import PrivateInflux

    server = PrivateInflux(tmp_path / "influxdb")
    server.start()
    yield server
    server.stop()
