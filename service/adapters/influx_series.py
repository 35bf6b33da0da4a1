"""``MetricSeries`` on InfluxDB: the key metrics per bucket, read from the
rollups (``rollup_1m`` or ``rollup_1h``), one InfluxQL request per call.

What each metric is, per bucket (``node`` None: the whole cluster):

- ``delivery_p99_ms``: ``notify_delivery`` ``latency_ms_p99`` of ``mode=live``,
  the largest of the nodes' (replay latency includes the time a user was away);
- ``delivery_rate``, ``publish_rate``, ``drop_rate``: ``sum(count)`` of
  ``notify_delivery``, ``notify_publish``, ``notify_drop`` over the nodes, per second;
- ``connections``: ``notify_ping`` ``connections`` (mean in the bucket), the busiest node's;
- ``rss_bytes``: ``process`` ``rss_bytes`` (mean) of serving processes, the largest;
- ``spool_bytes``: ``telemetry_self`` ``spool_bytes`` (mean), the largest of any process;
- ``cache_hit_rate``: ``sum(hits) / (sum(hits) + sum(misses))`` over every cache;
- ``db_query_ms``: ``sum(duration_ms_sum) / sum(count)`` of ``db_query``, the mean
  statement time.

The gauges with a per-process limit (connections, memory, spool) take the
node nearest its limit, so a trend towards it means what it says. A rate is 0
in a bucket where a serving process sampled itself (``process``) but left no
point of the measurement; a bucket with neither has no value. Ratios and
latencies have no value without data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from service.adapters.influx import InfluxClient, InfluxRejected
from service.adapters.influx_points import from_ms, to_ns
from service.domain.measurements import ANALYSIS_METRICS, ROLLUP_POLICIES

BUCKET = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1)}
MAX_BUCKETS = 20_000  # per call: two weeks of minutes
SERVING = " AND \"role\" = 'serve'"
_RATES = {"delivery_rate": "notify_delivery", "publish_rate": "notify_publish",
          "drop_rate": "notify_drop"}
_PEAKS = {  # metric: (measurement, field, condition)
    "delivery_p99_ms": ("notify_delivery", "latency_ms_p99", " AND \"mode\" = 'live'"),
    "connections": ("notify_ping", "connections", ""),
    "rss_bytes": ("process", "rss_bytes", SERVING),
    "spool_bytes": ("telemetry_self", "spool_bytes", ""),
}
_RATIOS = {  # metric: (measurement, numerator, denominator fields summed)
    "cache_hit_rate": ("cache", "hits", ("hits", "misses")),
    "db_query_ms": ("db_query", "duration_ms_sum", ("count",)),
}


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rows(result: dict[str, Any]) -> list[list[Any]]:
    return [row for series in result.get("series", []) for row in series.get("values", [])]


class InfluxMetricSeries:
    def __init__(self, client: InfluxClient) -> None:
        self.client = client

    def statements(self, metric: str, start: datetime, end: datetime, resolution: str,
                   node: str | None) -> list[str]:
        """The InfluxQL for one call: the metric's, then (for a rate) the
        buckets where a serving process was alive."""
        if metric not in ANALYSIS_METRICS:
            raise ValueError(f"unknown metric {metric!r}")
        if resolution not in ROLLUP_POLICIES:
            raise ValueError(f"resolution must be one of {', '.join(ROLLUP_POLICIES)}")
        if (end - start) / BUCKET[resolution] > MAX_BUCKETS:
            raise ValueError(f"at most {MAX_BUCKETS} buckets per call")
        rp = ROLLUP_POLICIES[resolution]
        where = f"time >= {to_ns(start)} AND time < {to_ns(end)}"
        if node is not None:
            where += f' AND "node" = {_quote(node)}'
        group = f"GROUP BY time({resolution}) fill(none)"
        if metric in _RATES:
            return [f'SELECT sum("count") FROM "{rp}"."{_RATES[metric]}" WHERE {where} {group}',
                    f'SELECT count("uptime_s") FROM "{rp}"."process" WHERE {where}{SERVING} '
                    f"{group}"]
        if metric in _PEAKS:
            measurement, field, condition = _PEAKS[metric]
            return [f'SELECT max("{field}") FROM "{rp}"."{measurement}" '
                    f"WHERE {where}{condition} {group}"]
        measurement, numerator, denominator = _RATIOS[metric]
        summed = ", ".join(f'sum("{f}")' for f in (numerator, *denominator))
        return [f'SELECT {summed} FROM "{rp}"."{measurement}" WHERE {where} {group}']

    def series(self, metric: str, start: datetime, end: datetime, resolution: str = "1m",
               *, node: str | None = None) -> list[tuple[datetime, float]]:
        statements = self.statements(metric, start, end, resolution, node)
        try:
            results = self.client.query("; ".join(statements))
        except InfluxRejected as exc:
            if "not found" in str(exc) or str(exc).endswith("not executed"):
                return []  # no database or no rollups yet
            raise
        results = (results + [{}] * len(statements))[:len(statements)]
        rows = _rows(results[0])
        if metric in _RATES:
            seconds = BUCKET[resolution].total_seconds()
            values = {row[0]: (row[1] or 0) / seconds for row in rows}
            for row in _rows(results[1]):
                values.setdefault(row[0], 0.0)
            return [(from_ms(t), float(v)) for t, v in sorted(values.items())]
        if metric in _PEAKS:
            return [(from_ms(row[0]), float(row[1])) for row in rows if row[1] is not None]
        out = []
        for row in rows:
            numerator, denominator = row[1] or 0, sum(v or 0 for v in row[2:])
            if denominator:
                out.append((from_ms(row[0]), numerator / denominator))
        return out
