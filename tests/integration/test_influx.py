"""The telemetry writer against a real InfluxDB: what is emitted is read back."""

import time

from service.adapters.influx import InfluxClient, InfluxSettings, Retention
from service.adapters.influx_writer import InfluxWriter
from service.service_layer.telemetry import TelemetryRing
from tests.support.backing_services import INFLUX_URL


def test_points_written_are_read_back_exactly(influx):
    ring = TelemetryRing()
    writer = InfluxWriter(ring, influx, {"node": "test-node", "role": "serve"})
    for i in range(50):
        ring.emit("notify_publish",
                  (("priority", "high"), ("category", "chat"), ("target", "user")),
                  {"count": i, "payload_bytes": 10, "duration_ms_max": 0.5})
    ring.emit("notify_delivery", (("mode", "live"),),
              {"count": 7, "latency_ms_max": 3.5, "latency_ms_p50": 1.25})
    ring.emit("notify_ack", (), {"count": 4})
    assert writer.step() == 52
    assert writer.written == 52 and writer.dropped == 0

    result = influx.query('SELECT sum("count"), count("count") FROM "notify_publish" '
                          "WHERE \"node\" = 'test-node' AND \"priority\" = 'high'")
    assert result[0]["series"][0]["values"][0][1:] == [sum(range(50)), 50]
    delivery = influx.query('SELECT "count", "latency_ms_max", "mode" FROM "notify_delivery"')
    assert delivery[0]["series"][0]["values"][0][1:] == [7, 3.5, "live"]
    ack = influx.query('SELECT "count" FROM "notify_ack"')
    assert ack[0]["series"][0]["values"][0][1] == 4


def test_an_unreachable_influxdb_costs_nothing_but_counted_drops():
    ring = TelemetryRing()
    client = InfluxClient(InfluxSettings(url="http://127.0.0.1:9", timeout=1.0))
    writer = InfluxWriter(ring, client, {"node": "n", "role": "serve"})
    ring.emit("notify_ack", (), {"count": 1})
    writer.step()
    assert writer.dropped == 1 and writer.dropped_by_reason == {"unavailable": 1}
    assert writer.last_error is not None


def test_the_writer_creates_its_database(influx_database):
    name = influx_database + "_new"
    client = InfluxClient(InfluxSettings(url=INFLUX_URL, database=name))
    ring = TelemetryRing()
    writer = InfluxWriter(ring, client, {"node": "n", "role": "serve"})
    try:
        ring.emit("notify_ack", (), {"count": 1})
        writer.step()
        assert writer.written == 1
        databases = client.query("SHOW DATABASES", db=None)[0]["series"][0]["values"]
        assert [name] in databases
    finally:
        client.query(f'DROP DATABASE "{name}"', method="POST", db=None)


def test_retention_policies_are_created_and_raw_is_the_default(influx):
    influx.ensure_database(Retention(raw="2d", rollup_1m="30d", rollup_1h="INF"))
    policies = influx.retention_policies()
    assert policies["raw"] == "48h0m0s"
    assert policies["rollup_1m"] == "720h0m0s"
    assert policies["rollup_1h"] == "0s"  # INF
    influx.ensure_database(Retention(raw="3d"))  # a changed setting is applied, not refused
    assert influx.retention_policies()["raw"] == "72h0m0s"
    influx.write_lines([f"notify_ack,node=n,role=serve count=1i {time.time_ns()}"])
    in_raw = influx.query('SELECT "count" FROM "raw"."notify_ack"')
    assert in_raw[0]["series"][0]["values"][0][1] == 1
    rows = influx.query(f'SHOW RETENTION POLICIES ON "{influx.settings.database}"')[0]
    default = [r[0] for r in rows["series"][0]["values"] if r[-1] is True]
    assert default == ["raw"]


def test_points_land_in_raw_whatever_the_database_default(influx_database):
    """As on InfluxDB 2.x, where the default DBRP mapping may be a rollup
    bucket and the service cannot change it: here the default is ``autogen``."""
    name = influx_database + "_autogen"
    client = InfluxClient(InfluxSettings(url=INFLUX_URL, database=name))
    client.query(f'CREATE DATABASE "{name}"', method="POST", db=None)  # autogen, default
    client.query(f'CREATE RETENTION POLICY "raw" ON "{name}" DURATION 7d REPLICATION 1',
                 method="POST", db=None)
    ring = TelemetryRing()
    writer = InfluxWriter(ring, client, {"node": "n", "role": "serve"},
                          prepare=lambda: None)  # as on 2.x: the mappings are the operator's
    try:
        ring.emit("notify_ack", (), {"count": 3})
        writer.step()
        assert writer.written == 1 and writer.dropped == 0
        in_raw = client.query('SELECT "count" FROM "raw"."notify_ack"')
        assert in_raw[0]["series"][0]["values"][0][1] == 3
        assert "series" not in client.query('SELECT "count" FROM "autogen"."notify_ack"')[0]
    finally:
        client.query(f'DROP DATABASE "{name}"', method="POST", db=None)


def test_a_raw_policy_dropped_since_is_made_again_and_the_write_kept(influx):
    influx.ensure_database(Retention())
    ring = TelemetryRing()
    writer = InfluxWriter(ring, influx, {"node": "n", "role": "serve"})
    ring.emit("notify_ack", (), {"count": 1})
    writer.step()
    influx.query(f'DROP RETENTION POLICY "raw" ON "{influx.settings.database}"',
                 method="POST", db=None)
    ring.emit("notify_ack", (), {"count": 2})
    writer.step()
    assert writer.written == 2 and writer.dropped == 0 and writer.backlog == 0
    in_raw = influx.query('SELECT "count" FROM "raw"."notify_ack"')
    assert [row[1] for row in in_raw[0]["series"][0]["values"]] == [2]
