"""``PointWriter`` on InfluxDB: the analysis jobs' points, written at once
(not through the telemetry ring), so a failed write fails the job's run.

Each point keeps its own timestamp: two points of one series at one time are
one point in InfluxDB, so writing the same points again changes nothing. The
writer's ring encoder is not used for that reason: it makes timestamps
strictly increasing per process, which would move rollup buckets apart.

Names and types come from the catalogue: a rollup retention policy's fields
from ``measurements.rollup_fields``, any other from the measurement's fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from service.adapters.influx import InfluxClient
from service.adapters.line_protocol import SchemaError, escape_tag, field_value
from service.domain.measurements import CATALOGUE, ROLLUP_POLICIES, FieldType, rollup_fields
from service.service_layer.ports import DataPoint

LINES_PER_REQUEST = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def from_ms(epoch_ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=epoch_ms)


def format_line(point: DataPoint, schema: Mapping[str, FieldType]) -> str | None:
    """One line; None when no field has a value. Raises SchemaError for a
    field the schema lacks."""
    known = CATALOGUE[point.measurement].all_tags
    tags = []
    for key, value in sorted(point.tags):
        if key not in known:
            raise SchemaError(f"{point.measurement} has no tag {key!r}")
        if value not in (None, "") and (escaped := escape_tag(str(value))):
            tags.append(f",{key}={escaped}")
    fields = []
    for name, value in point.fields.items():
        kind = schema.get(name)
        if kind is None:
            raise SchemaError(f"{point.measurement} has no field {name!r} here")
        if value is not None and (encoded := field_value(kind, value)) is not None:
            fields.append(f"{name}={encoded}")
    if not fields:
        return None
    return f"{point.measurement}{''.join(tags)} {','.join(fields)} {to_ns(point.at)}"


def schema_for(measurement: str, retention_policy: str | None) -> Mapping[str, FieldType]:
    if measurement not in CATALOGUE:
        raise SchemaError(f"unknown measurement {measurement!r}")
    if retention_policy in ROLLUP_POLICIES.values():
        return rollup_fields(measurement)
    return CATALOGUE[measurement].fields


class InfluxPointWriter:
    def __init__(self, client: InfluxClient) -> None:
        self.client = client

    def write(self, points: Sequence[DataPoint], retention_policy: str | None = None) -> None:
        schemas: dict[str, Mapping[str, FieldType]] = {}
        lines = []
        for point in points:
            if point.measurement not in schemas:
                schemas[point.measurement] = schema_for(point.measurement, retention_policy)
            line = format_line(point, schemas[point.measurement])
            if line is not None:
                lines.append(line)
        for start in range(0, len(lines), LINES_PER_REQUEST):
            self.client.write_lines(lines[start:start + LINES_PER_REQUEST],
                                    retention_policy=retention_policy)
