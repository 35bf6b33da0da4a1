"""InfluxDB line protocol, encoded from the telemetry catalogue's schema.

https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from service.domain.measurements import CATALOGUE, FieldType, Measurement

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})


class SchemaError(ValueError):
    """A record names a measurement or field that the catalogue lacks."""


class _NotFinite(Exception):
    """A float field is NaN or infinite, or an integer field is not an int."""


class _Mismatch(Exception):
    """The fields are not the ones the series' formatter was compiled for."""


def escape_tag(value: str) -> str:
    # A trailing backslash would escape the separator after it.
    return value.translate(_TAG_ESCAPES).rstrip("\\")


def escape_string_field(value: str) -> str:
    """Quotes and backslashes are escaped; line breaks, which would end the
    line, become spaces (line protocol has no escape for them)."""
    cleaned = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + cleaned.replace("\n", " ").replace("\r", " ") + '"'


def field_value(kind: FieldType, value: Any) -> str | None:
    """A field's value as line protocol writes it; None for a float that is
    not finite (InfluxDB refuses NaN and infinities). An integer field given
    a float (a rollup's mean) takes the nearest integer."""
    if kind is FieldType.INTEGER:
        return f"{round(value) if isinstance(value, float) else int(value)}i"
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
    """One line, on its own. Raises SchemaError for names outside the catalogue."""
    pairs = tuple(tags.items()) if isinstance(tags, Mapping) else tuple(tags)
    return LineEncoder(common_tags, catalogue).encode(measurement, pairs, fields, timestamp_ns)


class LineEncoder:
    """Encodes ring records to lines, fast: one formatter per series (a
    measurement and its tag values), compiled once, with the escaped
    measurement-and-tags prefix built in. Tags have bounded cardinality, so
    the formatters are bounded too; values past the tag limit are encoded the
    slow way and never cached.

    It also keeps what only the writer can cheaply keep: timestamps made
    strictly increasing per process (two points of one series must never
    share one, or InfluxDB keeps only the last) and the tag-cardinality limit.
    """

    CACHE_LIMIT = 50_000

    def __init__(
        self,
        common_tags: Mapping[str, str],
        catalogue: Mapping[str, Measurement] = CATALOGUE,
        *,
        tag_value_limit: int = 100,
    ) -> None:
        self._common = {k: v for k, v in common_tags.items() if v}
        self._catalogue = catalogue
        self._tag_value_limit = tag_value_limit
        self._seen_values: dict[tuple[str, str], set[str]] = {}
        self._series: dict[tuple, Callable] = {}
        self._last_ts = 0

    def encode(self, measurement: str, tags: tuple[tuple[str, str], ...],
               fields: Mapping[str, Any], timestamp_ns: int) -> str:
        """One line from (key, value) tag pairs. Raises SchemaError for names
        outside the catalogue."""
        if timestamp_ns <= self._last_ts:
            timestamp_ns = self._last_ts + 1
        formatter = self._series.get((measurement, tags))
        if formatter is None:
            formatter = self._formatter(measurement, tags, fields)
        try:
            line = formatter(fields, timestamp_ns)
        except (_Mismatch, KeyError, ValueError, TypeError, _NotFinite):
            line = self._slow_line(measurement, self._prefix(measurement, tags)[0], fields,
                                   timestamp_ns)
        self._last_ts = timestamp_ns
        return line

    def encode_many(self, records: list[tuple[str, Any, Mapping[str, Any], int]]) -> list[str]:
        """``encode`` over a batch, in one loop: the writer's path. Raises as
        ``encode`` does, and then leaves the timestamps as they were."""
        series = self._series
        last = self._last_ts
        lines: list[str] = []
        append = lines.append
        for measurement, tags, fields, timestamp_ns in records:
            if timestamp_ns <= last:
                timestamp_ns = last + 1
            formatter = series.get((measurement, tags))
            if formatter is None:
                formatter = self._formatter(measurement, tags, fields)
            try:
                append(formatter(fields, timestamp_ns))
            except (_Mismatch, KeyError, ValueError, TypeError, _NotFinite):
                append(self._slow_line(measurement, self._prefix(measurement, tags)[0], fields,
                                       timestamp_ns))
            last = timestamp_ns
        self._last_ts = last
        return lines

    def _formatter(self, measurement: str, tags: tuple[tuple[str, str], ...],
                   fields: Mapping[str, Any]) -> Callable:
        prefix, cacheable = self._prefix(measurement, tags)
        formatter = self._compile(measurement, prefix, tuple(fields))
        if cacheable:
            if len(self._series) >= self.CACHE_LIMIT:
                self._series.clear()
            self._series[(measurement, tags)] = formatter
        return formatter

    def _compile(self, measurement: str, prefix: str, names: tuple[str, ...]) -> Callable:
        """A formatter for one series and one set of field names: an f-string
        built once, as fast as a hand-written one. Other field names, values
        of the wrong type and non-finite floats raise, and take the slow path."""
        kinds = [self._catalogue[measurement].fields.get(name) for name in names]
        if not names or any(k not in (FieldType.INTEGER, FieldType.FLOAT) for k in kinds):
            return functools.partial(self._slow_line, measurement, prefix)
        loads = "; ".join(f"v{i} = f[{name!r}]" for i, name in enumerate(names))
        # v - v is 0.0 for finite floats only; an int check keeps 2.0 out of an integer
        checks = " or ".join(
            f"v{i} - v{i} != 0.0" if k is FieldType.FLOAT else f"v{i}.__class__ is not int"
            for i, k in enumerate(kinds))
        parts = ",".join(f"{name}={{v{i}}}i" if k is FieldType.INTEGER else f"{name}={{v{i}!r}}"
                         for i, (name, k) in enumerate(zip(names, kinds, strict=True)))
        source = (f"def fmt(f, ts, P=P):\n"
                  f"    if len(f) != {len(names)}: raise Mismatch\n"
                  f"    {loads}\n"
                  f"    if {checks}: raise NotFinite\n"
                  f"    return f'{{P}} {parts} {{ts}}'\n")
        namespace: dict[str, Any] = {"NotFinite": _NotFinite, "Mismatch": _Mismatch, "P": prefix}
        exec(compile(source, f"<line formatter {measurement}>", "exec"), namespace)
        return namespace["fmt"]

    def _slow_line(self, measurement: str, prefix: str, fields: Mapping[str, Any],
                   timestamp_ns: int) -> str:
        schema = self._catalogue[measurement].fields
        parts = []
        for name, value in fields.items():
            kind = schema.get(name)
            if kind is None:
                raise SchemaError(f"{measurement} has no field {name!r}")
            encoded = field_value(kind, value)
            if encoded is not None:
                parts.append(f"{escape_tag(name)}={encoded}")
        if not parts:
            raise SchemaError(f"{measurement} point has no valid field")
        return f"{prefix} {','.join(parts)} {timestamp_ns}"

    def _prefix(self, measurement: str, tags: tuple[tuple[str, str], ...]) -> tuple[str, bool]:
        """The escaped ``measurement,tag=value…`` text, and whether it may be
        cached (not if a value was replaced by ``other``)."""
        schema = self._catalogue.get(measurement)
        if schema is None:
            raise SchemaError(f"unknown measurement {measurement!r}")
        merged = dict(self._common)
        cacheable = True
        for tag, value in tags:
            if tag not in schema.tags:
                raise SchemaError(f"{measurement} has no tag {tag!r}")
            if value is None or value == "":
                continue
            limited = self._limit(measurement, tag, str(value))
            cacheable = cacheable and limited == value
            merged[tag] = limited
        tag_text = "".join(
            f",{escape_tag(k)}={escaped}"
            for k, v in sorted(merged.items())
            if (escaped := escape_tag(v))
        )
        return f"{measurement.translate(_MEASUREMENT_ESCAPES)}{tag_text}", cacheable

    def _limit(self, measurement: str, tag: str, value: str) -> str:
        """After ``tag_value_limit`` distinct values of one tag, write ``other``."""
        seen = self._seen_values.setdefault((measurement, tag), set())
        if value in seen:
            return value
        if len(seen) >= self._tag_value_limit:
            return "other"
        seen.add(value)
        return value
