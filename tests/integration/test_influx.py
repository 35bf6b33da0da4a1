"""The telemetry writer against a real InfluxDB: what is emitted is read back."""

import time

from service.adapters.influx import InfluxClient, InfluxSettings
from service.adapters.influx_writer import InfluxWriter
from service.service_layer.telemetry import TelemetryRing
from tests.conftest import INFLUX_URL


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
    from service.adapters.influx import Retention

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
