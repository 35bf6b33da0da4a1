"""``AnalysisReader`` on InfluxDB: the analysis jobs' trends and regressions,
and summaries of the raw measurements over a window, in InfluxQL through
``InfluxClient.query``. Every query is bounded in time and in rows.

Errors: InfluxDB unreachable, answering 5xx, or refusing the credentials
(401/403) raises ``StorageUnavailable`` (the routes answer 503). A database
that does not exist yet reads as empty. Any other refusal is a bug in a query
here and is raised as it is (``InfluxRejected``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from service.adapters.influx import RAW_POLICY, InfluxClient, InfluxRejected, InfluxUnavailable
from service.adapters.influx_levers import (
    BYTES_KEYS,
    LEVER_KEYS,
    effect_figures,
    effect_statements,
    lever_figures,
    lever_statements,
)
from service.domain.control import format_at
from service.domain.errors import StorageUnavailable, new_error_id
from service.domain.measurements import CATALOGUE, FieldType
from service.domain.report import METRIC_KEYS

log = logging.getLogger(__name__)

TREND_FIELDS = tuple(CATALOGUE["analysis_trend"].fields)
REGRESSION_FIELDS = tuple(CATALOGUE["analysis_regression"].fields)
MAX_TREND_SERIES = 500  # metric x window; the tags are bounded to 27 by the catalogue
ROWS_LIMIT = 1000  # most regressions one query returns
# Every query names the raw policy: on InfluxDB 2.x an unnamed one is the
# default DBRP mapping, which may be a rollup bucket.
RAW = f'"{RAW_POLICY}"'


def _ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _at(epoch_ms: int) -> str:
    return format_at(datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=epoch_ms))


def _rows(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each row of a statement's result as a dict, with its series' tags."""
    for series in result.get("series", []):
        tags = series.get("tags") or {}
        for values in series.get("values", []):
            yield {**tags, **dict(zip(series["columns"], values, strict=True))}


def _typed(row: dict[str, Any], measurement: str) -> dict[str, Any]:
    """Fields as the catalogue types them (JSON gives 2.0 back as 2)."""
    fields = CATALOGUE[measurement].fields
    out = {}
    for name, kind in fields.items():
        value = row.get(name)
        if value is not None and kind is FieldType.FLOAT:
            value = float(value)
        out[name] = value
    return out


class InfluxAnalysisReader:
    """Reads one InfluxDB database; ``node`` keeps to one node's points,
    None reads the whole cluster (rates summed over nodes)."""

    def __init__(self, client: InfluxClient, node: str | None = None,
                 trend_lookback: timedelta = timedelta(days=2)) -> None:
        self.client = client
        self.node = node
        self.trend_lookback = trend_lookback

    def _query(self, *statements: str) -> list[dict[str, Any]]:
        """One request; one result per statement, ``{}`` for none."""
        try:
            results = self.client.query("; ".join(statements))
        except InfluxUnavailable as exc:
            raise _unavailable("InfluxDB cannot be reached; retry", exc) from exc
        except InfluxRejected as exc:
            if exc.status in (401, 403):
                raise _unavailable("InfluxDB refused the credentials (INFLUX_USERNAME, "
                                   "INFLUX_PASSWORD, INFLUX_TOKEN)", exc) from exc
            # 1.x answers a missing database (or raw policy: a database made by
            # someone else) with "... not found", or with a lone "not executed"
            # when the request had several statements
            if not _missing(str(exc)):
                raise
            results = []
        return (results + [{}] * len(statements))[: len(statements)]

    def _where(self, start: datetime, end: datetime, extra: str = "") -> str:
        where = f"time >= {_ns(start)} AND time < {_ns(end)}"
        if self.node is not None:
            where += f' AND "node" = {_quote(self.node)}'
        return where + extra

    def latest_trends(self) -> list[dict[str, Any]]:
        """The newest point of each (metric, window) within the lookback."""
        now = datetime.now(UTC)
        fields = ", ".join(f'"{f}"' for f in TREND_FIELDS)
        (result,) = self._query(
            f'SELECT {fields}, "node" FROM {RAW}."analysis_trend" '
            f"WHERE {self._where(now - self.trend_lookback, now + timedelta(minutes=1))} "
            f'GROUP BY "metric", "window" ORDER BY time DESC LIMIT 1 SLIMIT {MAX_TREND_SERIES}')
        return [{"metric": row.get("metric"), "window": row.get("window"),
                 "at": _at(row["time"]), "node": row.get("node"),
                 **_typed(row, "analysis_trend")}
                for row in _rows(result)]

    def latest_health(self, lookback: timedelta = timedelta(minutes=15)) -> dict[str, Any]:
        """The health job's newest verdict per component within ``lookback``."""
        now = datetime.now(UTC)
        (result,) = self._query(
            f'SELECT "level", "reason", "status" FROM {RAW}."analysis_health" '
            f"WHERE {self._where(now - lookback, now + timedelta(minutes=1))} "
            'GROUP BY "component" ORDER BY time DESC LIMIT 1 SLIMIT 20')
        return {row["component"]: {"status": row.get("status"), "reason": row.get("reason"),
                                   "at": _at(row["time"])}
                for row in _rows(result) if row.get("component")}

    def regressions(self, since: datetime, until: datetime,
                    limit: int = ROWS_LIMIT) -> list[dict[str, Any]]:
        """The newest ``limit`` in [since, until), oldest first."""
        limit = max(1, min(int(limit), ROWS_LIMIT))
        fields = ", ".join(f'"{f}"' for f in REGRESSION_FIELDS)
        (result,) = self._query(
            f'SELECT {fields}, "metric", "direction", "node" FROM {RAW}."analysis_regression" '
            f"WHERE {self._where(since, until)} ORDER BY time DESC LIMIT {limit}")
        rows = [{"at": _at(row["time"]), "metric": row.get("metric"),
                 "direction": row.get("direction"), "node": row.get("node"),
                 **_typed(row, "analysis_regression")}
                for row in _rows(result)]
        return rows[::-1]

    def window_summary(self, start: datetime, end: datetime) -> dict[str, float | None]:
        """The key metrics over [start, end), in one request:

        - ``delivered_per_s``: sum of ``notify_delivery`` ``count`` (live and
          replay) over the window's length;
        - ``delivery_p99_ms``: the 99th percentile of the per-interval
          ``latency_ms_p99`` values of live deliveries (each point is one
          node's interval of about a second; a replay's latency includes the
          time its user was away, so it is left out);
        - ``drops_per_s``: sum of ``notify_drop`` ``count`` over the length;
        - ``cache_hit_rate``: sum(hits) / (sum(hits) + sum(misses)) over every cache;
        - ``rss_bytes``: the mean ``process`` ``rss_bytes`` of each serving
          node, summed over the nodes;
        - what the lever rules promise to move (``influx_levers.EFFECT_KEYS``):
          ``refused_connections_per_s`` (``notify_connection`` refused for
          ``connection_limit``), ``refused_publishes_per_s`` (``notify_throttle``
          ``reason=backpressure``), ``pool_waiting`` (``db_pool`` seconds waited
          per second, serving nodes) and ``wire_ratio`` (``notify_delivery``
          ``wire_bytes`` / ``bytes``).

        All None when the window has no point at all; rates are 0 (not None)
        when the service left points but none of that measurement.
        """
        summary, _lookups = self._summary(start, end)
        return {key: summary[key] for key in METRIC_KEYS}

    def _summary(self, start: datetime, end: datetime) -> tuple[dict[str, float | None], float]:
        """``window_summary`` and ``influx_levers.BYTES_KEYS``, in one
        request; and the cache lookups behind its hit rate."""
        seconds = (end - start).total_seconds()
        if seconds <= 0:
            return dict.fromkeys(METRIC_KEYS + BYTES_KEYS), 0.0
        where = self._where(start, end)
        serving = self._where(start, end, " AND \"role\" = 'serve'")
        statements = [
            f'SELECT sum("count") AS "n" FROM {RAW}."notify_delivery" WHERE {where}',
            # live only: a replay's latency includes the time its user was away
            f'SELECT percentile("latency_ms_p99", 99) AS "p99" FROM {RAW}."notify_delivery" '
            f"WHERE {where} AND \"mode\" = 'live'",
            f'SELECT sum("count") AS "n" FROM {RAW}."notify_drop" WHERE {where}',
            f'SELECT sum("hits") AS "hits", sum("misses") AS "misses" FROM {RAW}."cache" '
            f"WHERE {where}",
            f'SELECT sum("rss") AS "rss" FROM (SELECT mean("rss_bytes") AS "rss" '
            f'FROM {RAW}."process" WHERE {serving} GROUP BY "node") WHERE {where}',
            *effect_statements(where, serving),
        ]
        delivery, live, drops, cache, process, *effects = (next(_rows(r), None)
                                                           for r in self._query(*statements))
        if not any((delivery, live, drops, cache, process, *effects)):
            return dict.fromkeys(METRIC_KEYS + BYTES_KEYS), 0.0
        hits = (cache or {}).get("hits") or 0
        lookups = hits + ((cache or {}).get("misses") or 0)
        p99 = (live or {}).get("p99")
        rss = (process or {}).get("rss")
        return {
            "delivered_per_s": ((delivery or {}).get("n") or 0) / seconds,
            "delivery_p99_ms": None if p99 is None else float(p99),
            "drops_per_s": ((drops or {}).get("n") or 0) / seconds,
            "cache_hit_rate": hits / lookups if lookups else None,
            "rss_bytes": None if rss is None else float(rss),
            **effect_figures(effects, seconds),
        }, float(lookups)

    def health_inputs(self, start: datetime, end: datetime) -> dict[str, float | None]:
        """What the health and recommendation rules read over [start, end):
        the key metrics of ``window_summary`` and, per the catalogue:

        - ``published_per_s``, ``throttled_per_s``: sums over the length;
        - ``mean_batch``: delivered entries per batch; ``wait_p50_ms``: the mean
          of the intervals' ``wait_ms_p50`` (how long live entries waited);
          ``wait_p99_ms``: the 99th percentile of their ``wait_ms_p99``, taken
          as ``delivery_p99_ms`` is (the batching's share of the latency);
        - ``connections_node_max``: the busiest node's mean open connections
          (``notify_ping``); ``rss_node_max``: the largest serving node's mean RSS;
        - ``cpu_node_max``: the busiest serving node's CPU, cores in use;
        - ``db_query_ms``: mean statement time; ``db_slow``: slow statements;
        - ``telemetry_dropped``: records dropped in the window, all processes;
          ``spool_bytes``: the largest spool at its last report;
        - ``job_errors``: analysis job runs that failed;
        - ``cache_lookups``: hits and misses, so a hit rate of a handful of
          lookups can be told from a real one;
        - for the lever rules, ``influx_levers.BYTES_KEYS`` (JSON bytes per
          batch and per second delivered, pool checkouts and the wait per checkout)
          and ``LEVER_KEYS``
          (queued bytes, pool size, cache misses, evictions and invalidations).
        """
        seconds = (end - start).total_seconds()
        keys = ("published_per_s", "throttled_per_s", "mean_batch", "wait_p50_ms", "wait_p99_ms",
                "connections_node_max", "rss_node_max", "cpu_node_max", "db_query_ms",
                "db_slow", "telemetry_dropped", "spool_bytes", "job_errors", "cache_lookups")
        if seconds <= 0:
            return dict.fromkeys(METRIC_KEYS + BYTES_KEYS + LEVER_KEYS + keys)
        summary, cache_lookups = self._summary(start, end)
        where = self._where(start, end)
        serving = self._where(start, end, " AND \"role\" = 'serve'")
        per_node = f"WHERE {where} GROUP BY \"node\", \"role\")"
        rows = [next(_rows(r), {}) for r in self._query(
            f'SELECT sum("count") AS "n" FROM {RAW}."notify_publish" WHERE {where}',
            f'SELECT sum("count") AS "n" FROM {RAW}."notify_throttle" WHERE {where}',
            'SELECT sum("count") AS "n", sum("batches") AS "b", mean("wait_ms_p50") AS "w", '
            'percentile("wait_ms_p99", 99) AS "w99" '
            f'FROM {RAW}."notify_delivery" WHERE {where} AND "mode" = \'live\'',
            'SELECT max("c") AS "v" FROM (SELECT mean("connections") AS "c" FROM '
            f'{RAW}."notify_ping" {per_node}',
            'SELECT max("r") AS "v" FROM (SELECT mean("rss_bytes") AS "r" FROM '
            f'{RAW}."process" WHERE {serving} GROUP BY "node")',
            'SELECT max("c") AS "v" FROM (SELECT spread("cpu_seconds") AS "c" FROM '
            f'{RAW}."process" WHERE {serving} GROUP BY "node")',
            'SELECT sum("duration_ms_sum") AS "d", sum("count") AS "n", sum("slow") AS "s" '
            f'FROM {RAW}."db_query" WHERE {where}',
            'SELECT sum("d") AS "v" FROM (SELECT spread("dropped") AS "d" FROM '
            f'{RAW}."telemetry_self" {per_node}',
            'SELECT max("s") AS "v" FROM (SELECT last("spool_bytes") AS "s" FROM '
            f'{RAW}."telemetry_self" {per_node}',
            f'SELECT count("duration_ms") AS "n" FROM {RAW}."job_run" WHERE {where} '
            "AND \"outcome\" = 'error'",
            *lever_statements(where, serving),
        )]
        publish, throttle, live, conns, rss, cpu, db, dropped, spool, jobs = rows[:10]
        levers = [row or None for row in rows[10:]]
        batches = live.get("b") or 0
        queries = db.get("n") or 0
        return {
            **summary,
            "cache_lookups": cache_lookups,
            "published_per_s": (publish.get("n") or 0) / seconds,
            "throttled_per_s": (throttle.get("n") or 0) / seconds,
            "mean_batch": (live.get("n") or 0) / batches if batches else None,
            "wait_p50_ms": _float_or_none(live.get("w")),
            "wait_p99_ms": _float_or_none(live.get("w99")),
            "connections_node_max": _float_or_none(conns.get("v")),
            "rss_node_max": _float_or_none(rss.get("v")),
            "cpu_node_max": None if cpu.get("v") is None else float(cpu["v"]) / seconds,
            "db_query_ms": (db.get("d") or 0) / queries if queries else None,
            "db_slow": float(db.get("s") or 0),
            "telemetry_dropped": float(dropped.get("v") or 0),
            "spool_bytes": _float_or_none(spool.get("v")),
            "job_errors": float(jobs.get("n") or 0),
            **lever_figures(levers),
        }


def _missing(message: str) -> bool:
    return ("database not found" in message or "retention policy not found" in message
            or message.endswith("not executed"))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _unavailable(message: str, exc: Exception) -> StorageUnavailable:
    """The client's words for it; urllib3's and InfluxDB's own (addresses,
    errno) go to this node's log, under the id the answer carries."""
    error_id = new_error_id()
    log.warning("%s [%s]: %s", message, error_id, exc)
    return StorageUnavailable(message, error_id=error_id)
