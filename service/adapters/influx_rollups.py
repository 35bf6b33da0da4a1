"""``RollupStore`` on InfluxDB, in plain InfluxQL and line protocol.

Neither ``SELECT … INTO`` nor continuous queries: InfluxDB 2.x and 3.x do not
serve them through the 1.x-compatible API. So the aggregates are queried
(``GROUP BY time(1m)`` or ``time(1h)``, every tag, ``fill(none)``) and the
results written back with line protocol to the rollup retention policy (the
/write ``rp`` parameter). Which aggregate each field gets is its catalogue
field's ``rollup``; rollups keep the raw measurement's names.

Raw points are read from the ``raw`` retention policy, named in the query
(``FROM "raw"."m"``): on InfluxDB 2.x an unnamed policy is the default DBRP
mapping, which may be a rollup bucket. The retention policies are created on
first use (``ensure_database``), and again if a write finds one missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from service.adapters.influx import RAW_POLICY, InfluxClient, InfluxRejected, Retention
from service.adapters.influx_points import InfluxPointWriter, from_ms, to_ns
from service.domain.measurements import CATALOGUE, ROLLUP_POLICIES
from service.service_layer.ports import DataPoint

MARKER = ("process", "uptime_s")  # written last in each chunk: where the rollups stand


def aggregate_expression(field: str, aggregate: str) -> str:
    if aggregate in ("p50", "p95", "p99"):
        return f'percentile("{field}", {aggregate[1:]}) AS "{field}"'
    return f'{aggregate}("{field}") AS "{field}"'


def aggregate_query(measurement: str, start: datetime, end: datetime, resolution: str) -> str:
    if resolution not in ROLLUP_POLICIES:
        raise ValueError(f"resolution must be one of {', '.join(ROLLUP_POLICIES)}")
    select = ", ".join(aggregate_expression(f, a)
                         for f, a in CATALOGUE[measurement].rollups.items())
    tags = ", ".join(f'"{t}"' for t in CATALOGUE[measurement].all_tags)
    return (f'SELECT {select} FROM "{RAW_POLICY}"."{measurement}" '
            f"WHERE time >= {to_ns(start)} AND time < {to_ns(end)} "
            f"GROUP BY time({resolution}), {tags} fill(none)")


def points_of(measurement: str, result: dict[str, Any]) -> list[DataPoint]:
    """One point per row with any value: tags without a value are left out."""
    points = []
    for series in result.get("series", []):
        tags = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items() if v))
        columns = series["columns"]
        for row in series.get("values", []):
            fields = {c: v for c, v in zip(columns[1:], row[1:], strict=True) if v is not None}
            if fields:
                points.append(DataPoint(measurement, tags, fields, from_ms(row[0])))
    return points


class InfluxRollupStore(InfluxPointWriter):
    def __init__(self, client: InfluxClient, retention: Retention | None = None) -> None:
        super().__init__(client)
        self.retention = retention or Retention()
        self._prepared = False

    def newest_bucket(self, resolution: str, since: datetime) -> datetime | None:
        measurement, field = MARKER
        rp = ROLLUP_POLICIES[resolution]
        try:
            results = self.client.query(
                f'SELECT last("{field}") FROM "{rp}"."{measurement}" '
                f"WHERE time >= {to_ns(since)}")
        except InfluxRejected as exc:
            if "not found" in str(exc):  # no database or retention policy yet
                return None
            raise
        for result in results:
            for series in result.get("series", []):
                for row in series.get("values", []):
                    return from_ms(row[0])
        return None

    def aggregate(self, measurement: str, start: datetime, end: datetime,
                  resolution: str) -> list[DataPoint]:
        try:
            results = self.client.query(aggregate_query(measurement, start, end, resolution))
        except InfluxRejected as exc:
            if "database not found" in str(exc) or "retention policy not found" in str(exc):
                return []
            raise
        return points_of(measurement, results[0]) if results else []

    def write(self, points: Sequence[DataPoint], retention_policy: str | None = None) -> None:
        """To ``retention_policy``; None is ``raw`` (the trends' points)."""
        policy = retention_policy or RAW_POLICY
        if not self._prepared:
            self.client.ensure_database(self.retention)
            self._prepared = True
        try:
            super().write(points, policy)
        except InfluxRejected as exc:
            if "retention policy not found" not in str(exc):
                raise
            self.client.ensure_database(self.retention)  # dropped since: make it again
            super().write(points, policy)
