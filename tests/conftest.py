"""Fixtures that build on each other: database URL -> engine -> notification
log; InfluxDB client -> a fresh InfluxDB database. Every test resource gets a
unique name and is removed afterwards."""

from __future__ import annotations

import psycopg2.extensions
import pytest
from psycogreen.gevent import patch_psycopg

from service.adapters.database import make_engine
from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.notification_log import SqlNotificationLog
from tests.support.backing_services import INFLUX_URL, fresh_pg_database, unique
from tests.support.influx_server import PrivateInflux
from tests.support.schema import create_test_schema


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL database, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


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
    create_test_schema(engine)
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
    server = PrivateInflux(tmp_path / "influxdb")
    server.start()
    yield server
    server.stop()
