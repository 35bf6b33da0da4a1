"""Fixtures of the end-to-end tests: a running node (tests/support/server_process.py)
on real PostgreSQL or SQLite and a real InfluxDB, and Node clients that talk to it
(tests/support/js_clients.py)."""

from __future__ import annotations

import pytest

from tests.support.js_clients import JsClient
from tests.support.server_process import start_server, stop_server


@pytest.fixture
def server(pg_url, influx_database, tmp_path):
    running = start_server({"DATABASE_URL": pg_url, "INFLUX_DB": influx_database}, tmp_path)
    yield running
    assert stop_server(running) == 0, running.log_text()


@pytest.fixture
def sqlite_server(influx_database, tmp_path):
    running = start_server({"INFLUX_DB": influx_database}, tmp_path)
    yield running
    assert stop_server(running) == 0, running.log_text()


@pytest.fixture
def js_client():
    made: list[JsClient] = []

    def make(url: str, token: str, *args: str) -> JsClient:
        client = JsClient(url, token, *args)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
