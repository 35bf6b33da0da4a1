"""The trends job: for each key metric and window, the trend of its rollups
(``domain.trends``), written as ``analysis_trend`` points stamped with the
run's time. ``GET /admin/api/performance/trends`` serves the newest of each.

| window | series |
| --- | --- |
| ``1h`` | the last hour of 1-minute rollups |
| ``24h`` | the last 24 hours of 1-minute rollups |
| ``7d`` | the last 7 days of 1-hour rollups |

Limits (``trend_limits``): ``connections`` against ``max_connections``,
``rss_bytes`` against ``memory_budget_mb``, ``delivery_p99_ms`` against the
level's p99 target (``domain.health.p99_target_ms``: all three live, the
caller reads the effective config) and ``spool_bytes`` against
``TELEMETRY_SPOOL_MAX_BYTES``; the other metrics have none, and no ``eta_s``.
The health job writes the same limits as ``analysis_targets``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.health import p99_target_ms
from service.domain.measurements import ANALYSIS_METRICS
from service.domain.trends import trend
from service.service_layer.ports import DataPoint, MetricSeries, PointWriter

log = logging.getLogger(__name__)

WINDOWS = (("1h", timedelta(hours=1), "1m"), ("24h", timedelta(hours=24), "1m"),
           ("7d", timedelta(days=7), "1h"))


def trend_limits(values: Mapping[str, Any], spool_max_bytes: int) -> dict[str, float]:
    """The limits the trends are held against, from the effective config's
    values, in each metric's unit (``ANALYSIS_METRICS``)."""
    return {"connections": float(values["max_connections"]),
            "rss_bytes": float(values["memory_budget_mb"]) * (1 << 20),
            "delivery_p99_ms": p99_target_ms(values["batch_timeout_ms"]),
            "spool_bytes": float(spool_max_bytes)}


def run_trends(series: MetricSeries, writer: PointWriter, limits: Mapping[str, float],
               *, node: str = "cluster", now: datetime | None = None,
               metrics: tuple[str, ...] = ANALYSIS_METRICS) -> int:
    """Fit every metric over every window; returns the points written
    (a metric with fewer than ``domain.trends.MIN_POINTS`` buckets has none).
    Tagged ``node=cluster`` by default: the trend is the whole cluster's,
    whichever node's job fitted it."""
    now = now or datetime.now(UTC)
    points = []
    for window, span, resolution in WINDOWS:
        for metric in metrics:
            found = trend(series.series(metric, now - span, now, resolution),
                          limits.get(metric))
            if found is None:
                continue
            tags = (("metric", metric), ("node", node), ("role", "jobs"), ("window", window))
            points.append(DataPoint("analysis_trend", tags, found.fields(), now))
    if points:
        writer.write(points)
    log.debug("trends: %d of %d written", len(points), len(WINDOWS) * len(metrics))
    return len(points)
