"""The PointWriter port's promises (service/service_layer/ports.py), held by
the recording fake the unit tests use and by the InfluxDB one the analysis
jobs write with: points land in the retention policy named (else the
default), a point of the same series and time overwrites the earlier one,
and what the telemetry catalogue lacks is refused, with nothing written.

Where the fake and the InfluxDB one disagree, the fake is what gets fixed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from service.adapters.influx import InfluxClient, Retention
from service.adapters.influx_points import InfluxPointWriter, from_ms
from service.service_layer.ports import DataPoint, PointWriter
from tests.support.fake_metrics import RecordingPointWriter

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SERVE_A = (("node", "a"), ("role", "serve"))

# what a read of one policy finds: (minute, tags, fields), in time order
Stored = list[tuple[int, dict[str, str], dict[str, float]]]


def ping(minute: int, tags=SERVE_A, **fields: float) -> DataPoint:
    return DataPoint("notify_ping", tags, fields, T0 + timedelta(minutes=minute))


def influx_points(influx: InfluxClient, policy: str | None) -> Stored:
    where = f'"{policy}"."notify_ping"' if policy else '"notify_ping"'
    [result] = influx.query(f"SELECT * FROM {where} GROUP BY *")
    found = []
    for series in result.get("series", []):
        for row in series["values"]:
            fields = {c: v for c, v in zip(series["columns"][1:], row[1:], strict=True)
                      if v is not None}
            found.append((int((from_ms(row[0]) - T0) / timedelta(minutes=1)),
                          series.get("tags", {}), fields))
    return sorted(found, key=lambda p: (p[0], sorted(p[1].items())))


def fake_points(writer: RecordingPointWriter, policy: str | None) -> Stored:
    return sorted(((int((p.at - T0) / timedelta(minutes=1)), dict(p.tags), dict(p.fields))
                   for p in writer.stored(policy)), key=lambda p: (p[0], sorted(p[1].items())))


@pytest.fixture(params=["fake", "influxdb"])
def subject(request) -> tuple[PointWriter, Callable[[str | None], Stored]]:
    """The writer, and a read of what one retention policy holds."""
    if request.param == "fake":
        fake = RecordingPointWriter()
        return fake, lambda policy: fake_points(fake, policy)
    influx = request.getfixturevalue("influx")
    influx.ensure_database(Retention())
    return InfluxPointWriter(influx), lambda policy: influx_points(influx, policy)


def test_points_land_in_the_policy_named_or_the_default(subject):
    writer, stored = subject
    writer.write([ping(0, connections=3)])
    writer.write([ping(0, connections=2.5), ping(1, connections=4.0)], retention_policy="rollup_1m")
    assert stored(None) == [(0, {"node": "a", "role": "serve"}, {"connections": 3})]
    assert stored("rollup_1m") == [(0, {"node": "a", "role": "serve"}, {"connections": 2.5}),
                                   (1, {"node": "a", "role": "serve"}, {"connections": 4.0})]
    assert stored("rollup_1h") == []


def test_the_same_series_and_time_is_one_point_the_later_write_wins(subject):
    writer, stored = subject
    writer.write([ping(0, connections=3), ping(0, tags=(("node", "b"), ("role", "serve")),
                                               connections=7)])
    writer.write([ping(0, connections=5)])
    assert stored(None) == [(0, {"node": "a", "role": "serve"}, {"connections": 5}),
                            (0, {"node": "b", "role": "serve"}, {"connections": 7})]


@pytest.mark.parametrize(("point", "policy"), [
    (DataPoint("no_such_measurement", SERVE_A, {"count": 1}, T0), None),
    (ping(0, tags=(("user_id", "u1"),), connections=1), None),
    (ping(0, bogus=1), None),
    (DataPoint("job_run", SERVE_A, {"error": "boom"}, T0), "rollup_1h"),  # raw only
], ids=["measurement", "tag", "field", "rollup-field"])
def test_what_the_catalogue_lacks_is_refused_with_nothing_written(subject, point, policy):
    writer, stored = subject
    with pytest.raises(ValueError):
        writer.write([ping(1, connections=1), point], retention_policy=policy)
    assert stored(policy) == []
