"""Telemetry survives InfluxDB outages and service restarts, exactly once.

Each test runs its own influxd (tests/support/influx_server.py) so that it can stop
and restart it without disturbing other tests.
"""

from __future__ import annotations

import time

import pytest

from service.adapters.influx import InfluxClient, InfluxSettings
from tests.support.influx_server import PrivateInflux
from tests.support.py_client import PyClient, publish_n
from tests.support.server_process import start_server, stop_server
from tests.support.telemetry_accounting import assert_accounted, drained, telemetry
from tests.support.waiting import wait_until


def sums(influx: InfluxClient, measurement: str, *fields: str) -> tuple[int, ...]:
    """The sum of each field over all points of one measurement. A batch
    written twice with the same timestamps overwrites itself; one written
    twice any other way, or lost, changes these sums."""
    selection = ", ".join(f'sum("{f}")' for f in fields)
    series = influx.query(f'SELECT {selection} FROM "{measurement}"')[0]
    if "series" not in series:
        return (0,) * len(fields)
    return tuple(series["series"][0]["values"][0][1:])


@pytest.fixture
def fast_retry_env(pg_url):
    return {"DATABASE_URL": pg_url, "TELEMETRY_RETRY_MAX_S": "1", "INFLUX_DB": "notify_durability"}


def test_influxdb_down_and_back_during_publishing_keeps_every_event_once(
        private_influx, tmp_path, fast_retry_env):
    server = start_server({**fast_retry_env, "INFLUX_URL": private_influx.url}, tmp_path)
    influx = InfluxClient(InfluxSettings(url=private_influx.url, database="notify_durability"))
    alice = PyClient(server.url, server.token("alice"))
    try:
        publish_n(server, "alice", 20)
        wait_until(lambda: drained(server))
        assert server.request("GET", "/healthz").json()["status"] == "ok"
        private_influx.stop()
        publish_n(server, "alice", 20, start=20)  # all while InfluxDB is down
        assert [n["offset"] for n in alice.wait_for(40)] == list(range(1, 41))
        wait_until(lambda: telemetry(server)["backlog"] > 0)
        assert telemetry(server)["influx_reachable"] is False
        health = server.request("GET", "/healthz")
        assert health.status == 200 and health.json()["status"] == "degraded"
        assert health.json()["components"]["telemetry"] == "warning"
        private_influx.start()
        publish_n(server, "alice", 20, start=40)
        time.sleep(0.5)  # the last acks
        assert [n["offset"] for n in alice.wait_for(60)] == list(range(1, 61))  # once each
        wait_until(lambda: drained(server))
        assert_accounted(telemetry(server))
        assert server.request("GET", "/healthz").json()["status"] == "ok"  # by itself
    finally:
        alice.close()
        assert stop_server(server) == 0
    assert sums(influx, "notify_publish", "count", "requests") == (60, 60)  # each exactly once
    assert sums(influx, "notify_delivery", "count") == (60,)
    assert sums(influx, "notify_ack", "count") == (60,)


def test_a_restart_with_a_non_empty_spool_loses_nothing(private_influx, tmp_path, fast_retry_env):
    private_influx.stop()
    env = {**fast_retry_env, "INFLUX_URL": private_influx.url, "NODE_ID": "restart-node"}
    first = start_server(env, tmp_path)
    try:
        publish_n(first, "bob", 15)
        wait_until(lambda: telemetry(first)["backlog"] > 0)
    finally:
        assert stop_server(first) == 0
    spool = tmp_path / "var" / "telemetry-spool" / "restart-node-serve"
    assert any(spool.iterdir()), "the shutdown should have spooled what it could not write"

    private_influx.start()
    second = start_server({**env, "PORT": first.env["PORT"]}, tmp_path)
    try:
        wait_until(lambda: drained(second))
    finally:
        assert stop_server(second) == 0
    influx = InfluxClient(InfluxSettings(url=private_influx.url, database="notify_durability"))
    assert sums(influx, "notify_publish", "count", "requests") == (15, 15)
    assert not any(spool.iterdir())


def test_a_full_spool_drops_the_oldest_and_counts_it(pg_url, tmp_path):
    server = start_server({"DATABASE_URL": pg_url, "INFLUX_URL": "http://127.0.0.1:9",
                           "TELEMETRY_SPOOL_MAX_BYTES": "3000"}, tmp_path)
    try:
        for _ in range(6):
            publish_n(server, "carol", 40)
            time.sleep(1.1)  # one writer round: one spooled batch each
        t = wait_until(lambda: (t := telemetry(server))["dropped_by_reason"].get("spool_full")
                       and t)
        assert t["spool_bytes"] <= 3000
        assert t["dropped"] >= t["dropped_by_reason"]["spool_full"] > 0
        assert_accounted(telemetry(server))
    finally:
        assert stop_server(server) == 0


def test_a_refusing_influxdb_is_retried_a_bounded_number_of_times(tmp_path):
    """A real InfluxDB with authentication on refuses our writes with 401."""
    from service.adapters.influx_writer import Backoff, InfluxWriter
    from service.adapters.telemetry_spool import DiskSpool
    from service.service_layer.telemetry import TelemetryRing
    locked = PrivateInflux(tmp_path / "locked", auth_enabled=True)
    locked.start()
    try:
        # The first admin may be created without credentials; then nothing else may.
        anonymous = InfluxClient(InfluxSettings(url=locked.url, database="anything"))
        anonymous.query("CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES",
                        method="POST", db=None)
        InfluxClient(InfluxSettings(url=locked.url, database="anything", username="admin",
                                    password="pw")).ensure_database()
        ring = TelemetryRing()
        client = InfluxClient(InfluxSettings(url=locked.url, database="anything"))
        writer = InfluxWriter(ring, client, {"node": "n", "role": "serve"},
                              spool=DiskSpool(tmp_path / "spool", 1_000_000),
                              backoff=Backoff(base=0.05, cap=0.2))
        for i in range(10):
            ring.emit("notify_ack", (), {"count": i})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            writer.step()
            time.sleep(0.02)
        assert writer.posts == 3
        assert writer.dropped_by_reason == {"http_401": 10}
        assert writer.backlog == 0

        # With 1.x credentials the same writer path gets through.
        allowed = InfluxClient(InfluxSettings(url=locked.url, database="anything",
                                              username="admin", password="pw"))
        writer = InfluxWriter(ring, allowed, {"node": "n", "role": "serve"})
        ring.emit("notify_ack", (), {"count": 42})
        writer.step()
        assert writer.written == 1
        assert allowed.query('SELECT sum("count") FROM "notify_ack"')[0]["series"][0][
            "values"][0][1] == 42
    finally:
        locked.stop()
