"""InfluxDB line protocol, encoded from the telemetry catalogue's schema.

https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from service.domain.telemetry import CATALOGUE, FieldType, Measurement

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})


class SchemaError(ValueError):
    """A record names a measurement or field that the catalogue lacks."""


def escape_tag(value: str) -> str:
    # A trailing backslash would escape the separator after it.
    return value.translate(_TAG_ESCAPES).rstrip("\\")


def escape_string_field(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _field_value(kind: FieldType, value: Any) -> str | None:
    if kind is FieldType.INTEGER:
        return f"{int(value)}i"
    if kind is FieldType.FLOAT:
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    if kind is FieldType.BOOLEAN:
        return "true" if value else "false"
    return escape_string_field(str(value))


def encode(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, Any],
    timestamp_ns: int,
    common_tags: Mapping[str, str],
    catalogue: Mapping[str, Measurement] = CATALOGUE,
) -> str:
    """One line. Raises SchemaError for names outside the catalogue."""
    schema = catalogue.get(measurement)
    if schema is None:
        raise SchemaError(f"unknown measurement {measurement!r}")
    merged = dict(common_tags)
    for key, value in tags.items():
        if key not in schema.tags:
            raise SchemaError(f"{measurement} has no tag {key!r}")
        if value is not None and value != "":
            merged[key] = str(value)
    parts = []
    for key, value in fields.items():
        kind = schema.fields.get(key)
        if kind is None:
            raise SchemaError(f"{measurement} has no field {key!r}")
        encoded = _field_value(kind, value)
        if encoded is not None:
            parts.append(f"{escape_tag(key)}={encoded}")
    if not parts:
        raise SchemaError(f"{measurement} point has no valid field")
    tag_text = "".join(
        f",{escape_tag(k)}={escaped}"
        for k, v in sorted(merged.items())
        if (escaped := escape_tag(v))
    )
    return (
        f"{measurement.translate(_MEASUREMENT_ESCAPES)}{tag_text} {','.join(parts)} {timestamp_ns}"
    )
