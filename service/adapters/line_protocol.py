"""InfluxDB line protocol, encoded from the telemetry catalogue's schema.

https://docs.influxdata.com/influxdb/v1/write_protocols/line_protocol_reference/
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from service.domain.telemetry import CATALOGUE, FieldType, Measurement

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\ ", "\r": r"\ "})


class SchemaError(ValueError):
    """A record names a measurement or field that the catalogue lacks."""


class _NotFinite(Exception):
    """A float field is NaN or infinite: line protocol cannot carry it."""


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
    """One line, on its own. Raises SchemaError for names outside the catalogue."""
    pairs = tuple(tags.items()) if isinstance(tags, Mapping) else tuple(tags)
    return LineEncoder(common_tags, catalogue).encode(measurement, pairs, fields, timestamp_ns)


class LineEncoder:
    """Encodes ring records to lines, fast: the measurement-and-tags prefix is
    rendered once per distinct tag set (tags have bounded cardinality, so the
    cache is bounded too), and fields are formatted by a per-measurement table.

    It also keeps what only the writer can cheaply keep: timestamps made
    strictly increasing per process (two points of one series must never
    share one, or InfluxDB keeps only the last) and the tag-cardinality limit.
    """

    PREFIX_CACHE_LIMIT = 50_000

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
        self._prefixes: dict[tuple, str] = {}
        self._formatters: dict[object, tuple[int, Callable]] = {}
        self._last_ts = 0

    def encode(self, measurement: str, tags: tuple[tuple[str, str], ...],
               fields: Mapping[str, Any], timestamp_ns: int) -> str:
        """One line from (key, value) tag pairs. Raises SchemaError for names
        outside the catalogue."""
        if timestamp_ns <= self._last_ts:
            timestamp_ns = self._last_ts + 1
        key = (measurement, tags)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefix(measurement, tags, key)
        # One formatter per measurement, for the field names it was first
        # emitted with; another set of names gets its own, keyed by shape.
        known = self._formatters.get(measurement)
        if known is None or known[0] != len(fields):
            known = self._formatter_for_shape(measurement, fields)
        try:
            try:
                line = known[1](prefix, fields, timestamp_ns)
            except KeyError:  # same number of fields, other names
                known = self._formatter_for_shape(measurement, fields)
                line = known[1](prefix, fields, timestamp_ns)
        except (ValueError, TypeError, _NotFinite):
            line = self._slow_line(measurement, prefix, fields, timestamp_ns)
        self._last_ts = timestamp_ns
        return line

    def _formatter_for_shape(self, measurement: str, fields: Mapping[str, Any]
                             ) -> tuple[int, Callable]:
        shape = (measurement, *fields)
        known = self._formatters.get(shape)
        if known is None:
            known = self._formatters[shape] = (len(fields), self._compile(measurement,
                                                                          tuple(fields)))
            self._formatters.setdefault(measurement, known)
        return known

    def _compile(self, measurement: str, names: tuple[str, ...]) -> Callable:
        """A formatter for one measurement and one set of field names: an
        f-string built once, as fast as a hand-written one. Values of the
        wrong type or non-finite floats raise, and take the slow path."""
        schema = self._catalogue.get(measurement)
        if schema is None:
            raise SchemaError(f"unknown measurement {measurement!r}")
        kinds = [schema.fields.get(name) for name in names]
        if not names or any(k not in (FieldType.INTEGER, FieldType.FLOAT) for k in kinds):
            return functools.partial(self._slow_line, measurement)
        loads = "; ".join(f"v{i} = f[{name!r}]" for i, name in enumerate(names))
        checks = " or ".join(f"v{i} - v{i} != 0.0" for i, k in enumerate(kinds)
                             if k is FieldType.FLOAT) or "False"
        # An int check is cheaper than a {:d} format spec; both keep 2.0 out of an integer.
        checks += "".join(f" or v{i}.__class__ is not int" for i, k in enumerate(kinds)
                          if k is FieldType.INTEGER)
        parts = ",".join(f"{name}={{v{i}}}i" if k is FieldType.INTEGER else f"{name}={{v{i}!r}}"
                         for i, (name, k) in enumerate(zip(names, kinds, strict=True)))
        source = (f"def fmt(prefix, f, ts):\n    {loads}\n"
                  f"    if {checks}: raise NotFinite\n"
                  f"    return f'{{prefix}} {parts} {{ts}}'\n")
        namespace: dict[str, Any] = {"NotFinite": _NotFinite}
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
            encoded = _field_value(kind, value)
            if encoded is not None:
                parts.append(f"{escape_tag(name)}={encoded}")
        if not parts:
            raise SchemaError(f"{measurement} point has no valid field")
        return f"{prefix} {','.join(parts)} {timestamp_ns}"

    def _prefix(self, measurement: str, tags: tuple[tuple[str, str], ...], key: tuple) -> str:
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
        prefix = f"{measurement.translate(_MEASUREMENT_ESCAPES)}{tag_text}"
        if cacheable:  # values past the limit are not cached, so the cache stays bounded
            if len(self._prefixes) >= self.PREFIX_CACHE_LIMIT:
                self._prefixes.clear()
            self._prefixes[key] = prefix
        return prefix

    def _limit(self, measurement: str, tag: str, value: str) -> str:
        """After ``tag_value_limit`` distinct values of one tag, write ``other``."""
        seen = self._seen_values.setdefault((measurement, tag), set())
        if value in seen:
            return value
        if len(seen) >= self._tag_value_limit:
            return "other"
        seen.add(value)
        return value
