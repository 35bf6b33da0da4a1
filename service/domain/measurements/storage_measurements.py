"""Storage: database statements (all, slow ones, group commits of the
notification log), the connection pool, and the query result caches."""

from __future__ import annotations

from service.domain.measurements.measurement import FLOAT, INT, STRING, Field, Measurement

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(
        name="db_query",
        description=(
            "Database statements, summarised every 10 s per operation: how many, "
            "their total and longest duration, rows, and how many were slower "
            "than `DB_SLOW_MS`."
        ),
        emitted_by="adapters.db_metrics.QueryStats",
        tags=("operation",),
        tag_values={"operation": ("select", "insert", "update", "delete", "other")},
        field_specs={
            "count": Field(INT, "sum"),
            "duration_ms_sum": Field(FLOAT, "sum"),
            "duration_ms_max": Field(FLOAT, "max"),
            "rows": Field(INT, "sum"),
            "slow": Field(INT, "sum"),
        },
        example_query=(
            'SELECT sum("duration_ms_sum") / sum("count") FROM "db_query" '
            'WHERE $timeFilter GROUP BY time($__interval), "operation"'
        ),
    ),
    Measurement(
        name="db_write_batch",
        description=(
            "Group commits of the notification log: publishes appended "
            "(`count`) in how many transactions (`batches`), the largest batch "
            "(`size_max`) and the commit time (sum and maximum). Mean batch: "
            "`sum(count) / sum(batches)`."
        ),
        emitted_by="service_layer.write_batching.WriteBatcher",
        tags=(),
        field_specs={
            "count": Field(INT, "sum"),
            "batches": Field(INT, "sum"),
            "duration_ms_sum": Field(FLOAT, "sum"),
            "size_max": Field(INT, "max"),
            "duration_ms_max": Field(FLOAT, "max"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") / sum("batches") FROM "db_write_batch" '
            'WHERE $timeFilter GROUP BY time($__interval), "node"'
        ),
    ),
    Measurement(
        name="db_slow_query",
        description=(
            "Statements slower than `DB_SLOW_MS`, every 10 s per statement shape: "
            "the text with every literal and parameter replaced by `?` (`shape`, "
            "at most 240 characters; values never reach telemetry), how many ran "
            "slow and how long they took. `shape_id` is a short hash of the shape; "
            "past 50 shapes in an interval the rest count as `other`."
        ),
        emitted_by="adapters.db_metrics.QueryStats",
        tags=("shape_id",),
        field_specs={
            "count": Field(INT),
            "duration_ms_sum": Field(FLOAT),
            "duration_ms_max": Field(FLOAT),
            "shape": Field(STRING),
        },
        example_query=(
            'SELECT sum("count") FROM "db_slow_query" WHERE $timeFilter '
            'GROUP BY "shape_id"'
        ),
    ),
    Measurement(
        name="db_pool",
        description=(
            "The SQLAlchemy connection pool, sampled every 10 s: its size, "
            "connections checked out, overflow connections in use, and the "
            "checkouts since the last sample with how long they waited for a "
            "connection (sum and maximum): a pool too small shows here first."
        ),
        emitted_by="adapters.db_metrics.QueryStats",
        tags=(),
        field_specs={
            "size": Field(INT, "last"),
            "checked_out": Field(INT, "mean"),
            "overflow": Field(INT, "mean"),
            "waits": Field(INT, "sum"),
            "wait_ms_sum": Field(FLOAT, "sum"),
            "wait_ms_max": Field(FLOAT, "max"),
        },
        example_query=(
            'SELECT max("checked_out") FROM "db_pool" WHERE $timeFilter '
            'GROUP BY time($__interval), "node"'
        ),
    ),
    Measurement(
        name="cache",
        description=(
            "The query result caches, every 10 s per cache: `level` is `global` "
            "(values shared by everyone, such as the log's head) or `user` (a user's "
            "stream pages and unread count), `cache` names it. Counters are deltas "
            "since the previous point: `hits`, `misses`, `evictions` (by the entry "
            "bound, least recently used), `evictions_ttl` (expired), "
            "`evictions_bytes` (by the byte bound) and `invalidations` (dropped "
            "because a write changed them). `entries` and `bytes` (stored, after "
            "compression) are gauges. Hit rate: "
            "`sum(hits) / (sum(hits) + sum(misses))`."
        ),
        emitted_by="service_layer.cache_stats.CacheReporter",
        tags=("level", "cache"),
        tag_values={"level": ("global", "user"), "cache": ("log", "streams")},
        field_specs={
            "hits": Field(INT, "sum"),
            "misses": Field(INT, "sum"),
            "evictions": Field(INT, "sum"),
            "evictions_ttl": Field(INT, "sum"),
            "evictions_bytes": Field(INT, "sum"),
            "invalidations": Field(INT, "sum"),
            "entries": Field(INT, "mean"),
            "bytes": Field(INT, "mean"),
        },
        example_query=(
            'SELECT sum("hits") / (sum("hits") + sum("misses")) FROM "cache" '
            'WHERE $timeFilter GROUP BY time($__interval), "level"'
        ),
    ),
)
