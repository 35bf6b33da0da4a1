"""In-memory stand-ins for the ports the analysis jobs read and write
metrics through (``MetricSeries``, ``PointWriter``), for unit tests; held to
the InfluxDB ones by tests/integration/test_contract_metric_series.py and
test_contract_point_writer.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from service.domain.measurements import (
    ANALYSIS_METRICS,
    CATALOGUE,
    ROLLUP_POLICIES,
    rollup_fields,
)
from service.service_layer.ports import DataPoint, Tags


class InMemoryMetricSeries:
    """``MetricSeries`` over given points: ``data[(metric, resolution)]`` is the
    whole cluster's list of (time, value), any order, and
    ``data[(metric, resolution, node)]`` one node's; ``calls`` records what was asked."""

    def __init__(self, data: Mapping[tuple[str, ...], list[tuple[datetime, float]]]) -> None:
        self.data = data
        self.calls: list[tuple[str, datetime, datetime, str, str | None]] = []

    def series(self, metric: str, start: datetime, end: datetime, resolution: str = "1m",
               *, node: str | None = None) -> list[tuple[datetime, float]]:
        if metric not in ANALYSIS_METRICS:  # as the InfluxDB one refuses them
            raise ValueError(f"unknown metric {metric!r}")
        if resolution not in ROLLUP_POLICIES:
            raise ValueError(f"resolution must be one of {', '.join(ROLLUP_POLICIES)}")
        self.calls.append((metric, start, end, resolution, node))
        key = (metric, resolution) if node is None else (metric, resolution, node)
        return sorted((t, v) for t, v in self.data.get(key, []) if start <= t < end)


class RecordingPointWriter:
    """``PointWriter`` that keeps what it was given, by retention policy, and
    refuses what the catalogue lacks (all or nothing), as the InfluxDB one does."""

    def __init__(self) -> None:
        self.written: list[tuple[DataPoint, str | None]] = []

    def write(self, points: Sequence[DataPoint], retention_policy: str | None = None) -> None:
        for point in points:
            refuse_unknown(point, retention_policy)
        self.written.extend((p, retention_policy) for p in points)

    def stored(self, retention_policy: str | None = None) -> list[DataPoint]:
        """What a read of the policy finds: one point per series and time,
        the later write's fields over the earlier's."""
        points: dict[tuple[str, Tags, datetime], DataPoint] = {}
        for point, policy in self.written:
            if policy == retention_policy:
                key = (point.measurement, tuple(sorted(point.tags)), point.at)
                fields = {**(points[key].fields if key in points else {}), **point.fields}
                points[key] = DataPoint(point.measurement, key[1], fields, point.at)
        return list(points.values())


def refuse_unknown(point: DataPoint, retention_policy: str | None) -> None:
    """ValueError for a measurement, tag or field the catalogue does not have there."""
    spec = CATALOGUE.get(point.measurement)
    if spec is None:
        raise ValueError(f"unknown measurement {point.measurement!r}")
    rolled_up = retention_policy in ROLLUP_POLICIES.values()
    fields = rollup_fields(point.measurement) if rolled_up else spec.fields
    unknown = ({k for k, _ in point.tags} - set(spec.all_tags)) | (set(point.fields) - set(fields))
    if unknown:
        raise ValueError(f"{point.measurement} has no {sorted(unknown)} here")
