"""The telemetry catalogue: every measurement the service writes to InfluxDB.

This module is the single source of truth for measurement, tag and field
names. Dashboards, alert rules and jobs may name only what is defined here
(a test checks them), and docs/telemetry.md is generated from it.

Tags must have bounded cardinality: never user ids or notification ids.
Every point also carries the common tags ``node`` (one per service node) and
``role`` (serve or jobs).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from service.domain.advice import RULES as ADVICE_RULES
from service.domain.control import EVENT_TYPES
from service.domain.impact import VERDICTS
from service.domain.report import METRIC_KEYS as REPORT_FIGURES


class FieldType(enum.Enum):
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"


COMMON_TAGS = ("node", "role")
ROLES = ("serve", "jobs")


@dataclass(frozen=True)
class Measurement:
    name: str
    description: str
    emitted_by: str
    tags: tuple[str, ...]
    fields: dict[str, FieldType]
    example_query: str
    tag_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # "event": one point per occurrence. "summary": one point per tag set per
    # writer interval (about a second), fields summed (``*_max``: maximum).
    kind: str = "event"
    # The fields a point may lack (each emitter's code paths; the test
    # tests/unit/test_telemetry_optional_fields.py writes points through them).
    # Every other field is on every point: a query may select it unguarded.
    optional_fields: tuple[str, ...] = ()

    @property
    def all_tags(self) -> tuple[str, ...]:
        return COMMON_TAGS + self.tags


INT, FLOAT, STRING = FieldType.INTEGER, FieldType.FLOAT, FieldType.STRING
PRIORITIES = ("low", "normal", "high", "critical")
# The key metrics the analysis jobs follow (``analysis_trend``, ``analysis_regression``).
# The name gives the unit: ``_ms``, ``_bytes``, ``_rate`` per second (``cache_hit_rate``
# 0-1), ``connections`` a count.
ANALYSIS_METRICS = ("delivery_p99_ms", "delivery_rate", "publish_rate", "drop_rate",
                    "connections", "rss_bytes", "cache_hit_rate", "db_query_ms", "spool_bytes")
TREND_WINDOWS = ("1h", "24h", "7d")
# The scheduled analysis jobs (``job_run``): entrypoints.jobs.build_jobs names each one.
JOB_NAMES = ("rollups", "trends", "regressions", "health", "recommendations", "impact")

# ``analysis_impact``: each figure of the optimization report, before and after.
IMPACT_FIGURE_FIELDS = tuple(f"{figure}_{side}" for figure in REPORT_FIGURES
                             for side in ("before", "after"))

CATALOGUE: dict[str, Measurement] = {
    m.name: m
    for m in (
        Measurement(
            name="notify_publish",
            description=(
                "Accepted publish requests: `requests`, the stream entries they "
                "created (`count`, one per recipient), payload bytes, and the handler's "
                "time from parsing to commit and hand-off (sum and maximum). Mean "
                "duration: `sum(duration_ms_sum) / sum(requests)`."
            ),
            emitted_by="service_layer.publishing.publish",
            tags=("priority", "category", "target"),
            tag_values={"priority": PRIORITIES, "target": ("user", "users", "broadcast")},
            fields={
                "count": INT,
                "requests": INT,
                "payload_bytes": INT,
                "duration_ms_sum": FLOAT,
                "duration_ms_max": FLOAT,
            },
            kind="summary",
            example_query=(
                'SELECT sum("count") FROM "notify_publish" WHERE $timeFilter '
                'GROUP BY time($__interval), "priority"'
            ),
        ),
        Measurement(
            name="notify_dispatch",
            description=(
                "What became of each new stream entry when it was handed to live "
                "delivery on this node: `live` (sent at once to a connection of its "
                "user), `queued` (left in the offline queue: the user has no ready "
                "connection here, it is replayed on reconnect), `deferred` (held back by "
                "backpressure: the user's connections get it from the log once the node "
                "has caught up) or `dropped` (the hand-off "
                "failed; the entry stays in the log). Per node, the sum of `count` over "
                "these outcomes equals `notify_publish` `count`. With several nodes, an "
                "entry committed on another node and sent here to connections of its "
                "users counts as `relayed` (users, once each), and nothing else: its "
                "own node accounted for it."
            ),
            emitted_by="service_layer.delivery.DeliveryHub",
            tags=("outcome",),
            tag_values={"outcome": ("live", "queued", "deferred", "dropped", "relayed")},
            fields={"count": INT},
            kind="summary",
            example_query=(
                'SELECT sum("count") FROM "notify_dispatch" WHERE $timeFilter '
                'GROUP BY time($__interval), "outcome"'
            ),
        ),
        Measurement(
            name="notify_delivery",
            description=(
                "Notifications sent to connections: `count` notifications in "
                "`batches` batches (one batch is one `notifications` event to one "
                "connection) of `bytes` JSON, `wire_bytes` as sent (smaller where a "
                "large batch went compressed to a client that asked for it), and the "
                "publish-to-send latency over "
                "the interval (p50, p95, p99 within 2 %, and max); `wait_ms` is how long "
                "live entries waited in their connection's batch. `mode` is `live`, or "
                "`replay` (read back from the log: offline queue, reconnect, or a gap). "
                "`trigger` says why a batch went out: `size` (it was full), `timeout` "
                "(its deadline came), `immediate` (a `critical` entry waits for "
                "nothing), `catch_up` (what waited, flushed ahead of a replay) or "
                "`replay` (a page read back from the log). "
                "Counts and maxima are exact. Percentiles use every batch until 1,024 "
                "entries in an interval, then a random half, quarter... of the batches, "
                "weighted, so their cost stays flat at any rate (a few % of sampling error). "
                "A batch of broadcasts shared by the connections in step is measured once "
                "for all of them: its latencies as of its first send and its last, half "
                "the connections each."
            ),
            emitted_by="service_layer.outbox.Outbox",
            tags=("mode", "trigger"),
            tag_values={"mode": ("live", "replay"),
                        "trigger": ("size", "timeout", "immediate", "catch_up", "replay")},
            fields={
                "count": INT,
                "batches": INT,
                "bytes": INT,
                "wire_bytes": INT,
                "latency_ms_p50": FLOAT,
                "latency_ms_p95": FLOAT,
                "latency_ms_p99": FLOAT,
                "latency_ms_max": FLOAT,
                "wait_ms_p50": FLOAT,
                "wait_ms_p95": FLOAT,
                "wait_ms_p99": FLOAT,
                "wait_ms_max": FLOAT,
            },
            kind="summary",
            # a replayed batch never waited in a connection's batch queue
            optional_fields=("wait_ms_p50", "wait_ms_p95", "wait_ms_p99", "wait_ms_max"),
            example_query=(
                'SELECT sum("count") FROM "notify_delivery" WHERE $timeFilter '
                'GROUP BY time($__interval), "mode"'
            ),
        ),
        Measurement(
            name="notify_ack",
            description=(
                "Acknowledgements from clients: `acks` events, covering `count` "
                "stream entries not acknowledged before. A read mark over HTTP "
                "(`POST /api/v1/users/<id>/read`) is one too."
            ),
            emitted_by="service_layer.acks.AckBuffer, service_layer.history.History",
            tags=(),
            fields={"count": INT, "acks": INT},
            kind="summary",
            example_query=(
                'SELECT sum("count") FROM "notify_ack" WHERE $timeFilter GROUP BY time($__interval)'
            ),
        ),
        Measurement(
            name="notify_drop",
            description=(
                "Notifications not delivered live, with the reason: `handoff_error`, "
                "`slow_consumer` (the client was closed for reading too slowly), "
                "`disconnected` (it left with a batch still waiting). They stay in the "
                "log, and a reconnect replays them. Per node, dispatched `live` = "
                "delivered `live` + dropped `slow_consumer` + `disconnected`."
            ),
            emitted_by="service_layer.delivery.DeliveryHub, service_layer.outbox.Outbox",
            tags=("reason",),
            tag_values={"reason": ("handoff_error", "slow_consumer", "disconnected")},
            fields={"count": INT},
            kind="summary",
            example_query=(
                'SELECT sum("count") FROM "notify_drop" WHERE $timeFilter '
                'GROUP BY time($__interval), "reason"'
            ),
        ),
        Measurement(
            name="notify_throttle",
            description=(
                "Publishes refused with 429: `reason=rate` when a recipient's token "
                "bucket for the priority was empty, `reason=backpressure` when the node "
                "was behind and the priority's action is `refuse`. `count` requests, to "
                "`recipients` recipients (1 for backpressure). Nothing of them was stored."
            ),
            emitted_by="service_layer.throttling.PublishThrottle, "
                       "service_layer.backpressure.Backpressure",
            tags=("priority", "reason"),
            tag_values={"priority": PRIORITIES, "reason": ("rate", "backpressure")},
            fields={"count": INT, "recipients": INT},
            kind="summary",
            example_query=(
                'SELECT sum("count") FROM "notify_throttle" WHERE $timeFilter '
                'GROUP BY time($__interval), "priority"'
            ),
        ),
        Measurement(
            name="notify_offline_trim",
            description=(
                "One run of the offline-queue bounds (`OFFLINE_QUEUE_MAX` entries and "
                "`OFFLINE_QUEUE_MAX_AGE` per user, oldest first): `streams` trimmed, "
                "`entries` removed, of which `unacked` the users had not acknowledged "
                "(each such stream's epoch moved on: `epochs_bumped`), message bodies "
                "no longer referred to (`messages`), and the run's `duration_ms`. "
                "What is enqueued and replayed is in `notify_dispatch` "
                "(`outcome=queued`) and `notify_delivery` (`mode=replay`)."
            ),
            emitted_by="service_layer.offline.trim_offline_queues",
            tags=(),
            fields={"streams": INT, "entries": INT, "unacked": INT, "messages": INT,
                    "epochs_bumped": INT, "duration_ms": FLOAT},
            example_query=(
                'SELECT sum("unacked") FROM "notify_offline_trim" WHERE $timeFilter '
                "GROUP BY time($__interval)"
            ),
        ),
        Measurement(
            name="notify_reload",
            description=(
                "Clients told to `reload` because entries they had not received were "
                "trimmed: `count` clients."
            ),
            emitted_by="service_layer.outbox.Outbox",
            tags=(),
            fields={"count": INT},
            kind="summary",
            example_query=(
                'SELECT sum("count") FROM "notify_reload" WHERE $timeFilter '
                "GROUP BY time($__interval)"
            ),
        ),
        Measurement(
            name="notify_backpressure",
            description=(
                "The node started (`event=engaged`) or stopped (`released`) pushing "
                "back: bytes queued for clients over all connections against the "
                "high-water mark, or memory (`rss_bytes`) against the level's "
                "`memory_budget_bytes`. On release, `refused` publishes and `deferred` "
                "entries during the episode. See docs/operations.md."
            ),
            emitted_by="service_layer.backpressure.Backpressure",
            tags=("event",),
            tag_values={"event": ("engaged", "released")},
            fields={"queued_bytes": INT, "rss_bytes": INT, "memory_budget_bytes": INT,
                    "refused": INT, "deferred": INT},
            example_query=(
                'SELECT "queued_bytes", "rss_bytes" FROM "notify_backpressure" '
                "WHERE $timeFilter"
            ),
        ),
        Measurement(
            name="notify_queues",
            description=(
                "Send-queue depth, sampled twice a second: the most bytes waiting for "
                "clients over all connections (`queued_bytes_max`) and the most "
                "connections with anything waiting (`backlogged_connections_max`), per "
                "interval, over `samples` samples."
            ),
            emitted_by="service_layer.backpressure.Backpressure",
            tags=(),
            fields={"samples": INT, "queued_bytes_max": INT, "backlogged_connections_max": INT},
            kind="summary",
            example_query=(
                'SELECT max("queued_bytes_max") FROM "notify_queues" WHERE $timeFilter '
                "GROUP BY time($__interval)"
            ),
        ),
        Measurement(
            name="runtime_leaks",
            description=(
                "Per kind of per-connection object (`connection`: the hub's; "
                "`engineio_session`: Engine.IO's), how many are `alive`, and how many "
                "were released when their connection closed but are still referenced "
                "30 s later (`leaked`; the log names what holds the first one). Every "
                "10 s. `connection` should stay 0. `engineio_session` may show 1: "
                "python-engineio's service task holds the last session it looked at "
                "until its next round; more than 1 is a leak."
            ),
            emitted_by="service_layer.leaks.report_leaks",
            tags=("kind",),
            tag_values={"kind": ("connection", "engineio_session")},
            fields={"alive": INT, "leaked": INT},
            example_query=(
                'SELECT max("leaked") FROM "runtime_leaks" WHERE $timeFilter '
                'GROUP BY time($__interval), "kind"'
            ),
        ),
        Measurement(
            name="cluster",
            description=(
                "Presence and the relay between nodes, every `PRESENCE_INTERVAL` "
                "(5 s), from each node of a cluster (`REDIS_URL` set): this node's "
                "`connections` and `users`; the cluster as Redis shows it "
                "(`cluster_nodes`, `cluster_connections`, and `cluster_users`, where a "
                "user on two nodes counts once), which every node reports alike; "
                "`redis_up` (1 or 0); and the entries this node announced "
                "(`relay_sent`), left to the log follower (`relay_unsent`: Redis was "
                "down) and received (`relay_received`), as counters since start."
            ),
            emitted_by="service_layer.cluster.run_presence",
            tags=(),
            fields={"connections": INT, "users": INT, "cluster_nodes": INT,
                    "cluster_connections": INT, "cluster_users": INT, "redis_up": INT,
                    "relay_sent": INT, "relay_unsent": INT, "relay_received": INT},
            # what Redis says of the cluster: absent while it cannot be read
            optional_fields=("cluster_nodes", "cluster_connections", "cluster_users"),
            example_query=(
                'SELECT last("cluster_users") FROM "cluster" WHERE $timeFilter '
                'GROUP BY time($__interval)'
            ),
        ),
        Measurement(
            name="notify_connection",
            description=(
                "Socket.IO connections opened, closed and refused, with the reason; "
                "`active` is the node's connection count just after the event. "
                "`rate_limited`: refused for too many connection attempts from the "
                "address or the user, or closed for flooding events."
            ),
            emitted_by="entrypoints.sockets",
            tags=("event", "reason"),
            tag_values={
                "event": ("opened", "closed", "refused"),
                "reason": (
                    "ok",
                    "client_disconnect",
                    "server_disconnect",
                    "ping_timeout",
                    "transport_close",
                    "transport_error",
                    "idle",
                    "slow_consumer",
                    "other",
                    "unauthorized",
                    "invalid_input",
                    "offset_out_of_range",
                    "connection_limit",
                    "storage_unavailable",
                    "rate_limited",
                    "internal_error",
                ),
            },
            fields={"count": INT, "active": INT},
            example_query=(
                'SELECT last("active") FROM "notify_connection" WHERE $timeFilter '
                'GROUP BY time($__interval), "node"'
            ),
        ),
        Measurement(
            name="notify_ping",
            description=(
                "Engine.IO ping/pong health, sampled every 10 s: connections, those "
                "waiting for a pong, and those waiting longer than half the pong "
                "timeout. Connections closed for a missed pong appear in "
                "`notify_connection` with reason `ping_timeout`."
            ),
            emitted_by="adapters.runtime_metrics.RuntimeSampler",
            tags=(),
            fields={"connections": INT, "awaiting_pong": INT, "late_pong": INT},
            example_query=(
                'SELECT max("late_pong") FROM "notify_ping" WHERE $timeFilter '
                'GROUP BY time($__interval), "node"'
            ),
        ),
        Measurement(
            name="process",
            description=(
                "Process resources, sampled every 10 s: resident memory, CPU seconds "
                "and GC collections (cumulative since start), GC pause time in the "
                "last interval, open file descriptors, and request-handler greenlets "
                "(one per HTTP request or WebSocket connection)."
            ),
            emitted_by="adapters.runtime_metrics.RuntimeSampler",
            tags=(),
            fields={
                "rss_bytes": INT,
                "cpu_seconds": FLOAT,
                "open_fds": INT,
                "gc_gen0": INT,
                "gc_gen1": INT,
                "gc_gen2": INT,
                "gc_pause_ms": FLOAT,
                "gc_pause_ms_max": FLOAT,
                "handler_greenlets": INT,
                "uptime_s": FLOAT,
            },
            example_query=(
                'SELECT max("rss_bytes") FROM "process" WHERE $timeFilter '
                'GROUP BY time($__interval), "node", "role"'
            ),
        ),
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
            fields={
                "count": INT,
                "duration_ms_sum": FLOAT,
                "duration_ms_max": FLOAT,
                "rows": INT,
                "slow": INT,
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
            fields={
                "count": INT,
                "batches": INT,
                "duration_ms_sum": FLOAT,
                "size_max": INT,
                "duration_ms_max": FLOAT,
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
            fields={
                "count": INT,
                "duration_ms_sum": FLOAT,
                "duration_ms_max": FLOAT,
                "shape": STRING,
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
            fields={"size": INT, "checked_out": INT, "overflow": INT, "waits": INT,
                    "wait_ms_sum": FLOAT, "wait_ms_max": FLOAT},
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
            fields={"hits": INT, "misses": INT, "evictions": INT, "evictions_ttl": INT,
                    "evictions_bytes": INT, "invalidations": INT, "entries": INT,
                    "bytes": INT},
            example_query=(
                'SELECT sum("hits") / (sum("hits") + sum("misses")) FROM "cache" '
                'WHERE $timeFilter GROUP BY time($__interval), "level"'
            ),
        ),
        Measurement(
            name="config_change",
            description=(
                "A change of effective configuration, for Grafana annotations: "
                "`kind` says what changed, `level` is the optimization level after "
                "it, `text` describes it and `actor` made it (`node` for a start-up, "
                "whose `level` is the one live after the control log's history)."
            ),
            emitted_by="bootstrap.App.start_background, service_layer.tuning.LiveConfig",
            tags=("kind",),
            tag_values={"kind": ("startup", "level", "parameter")},
            fields={"level": STRING, "text": STRING, "actor": STRING},
            example_query=('SELECT "text", "level" FROM "config_change" WHERE $timeFilter'),
        ),
        Measurement(
            name="control_event",
            description=(
                "Every event appended to the control log, once, by the process that "
                "appended it: recommendations issued, applied and dismissed, measured "
                "impact (`impact_measured`, with its verdict in `text`), rollbacks "
                "(automatic ones by actor `jobs`), alerts received, level and parameter "
                "changes. `seq` is the event's in the log, `text` says what it did "
                "and why. The log itself (`GET /api/v1/config/history`) is the record; "
                "this is for Grafana."
            ),
            emitted_by="service_layer.tuning.LiveConfig.append",
            tags=("type",),
            tag_values={"type": EVENT_TYPES},
            fields={"seq": INT, "actor": STRING, "text": STRING},
            example_query=(
                'SELECT "seq", "actor", "text" FROM "control_event" WHERE $timeFilter '
                'GROUP BY "type"'
            ),
        ),
        Measurement(
            name="telemetry_self",
            description=(
                "The telemetry pipeline's own counters since the process started: "
                "records emitted, written to InfluxDB, spooled to disk and dropped; "
                "records waiting in memory (`queued`), the spool's size and the "
                "last write's duration. Reported every 10 s."
            ),
            emitted_by="adapters.influx_writer.InfluxWriter",
            tags=(),
            fields={
                "emitted": INT,
                "written": INT,
                "spooled": INT,
                "dropped": INT,
                "queued": INT,
                "spool_bytes": INT,
                "write_ms": FLOAT,
            },
            example_query=(
                'SELECT non_negative_difference(last("written")) FROM "telemetry_self" '
                'WHERE $timeFilter GROUP BY time($__interval), "node", "role"'
            ),
        ),
        Measurement(
            name="telemetry_dropped",
            description=(
                "Telemetry records dropped since the process started, per reason "
                "(cumulative, reported with `telemetry_self`): `ring_full` (emitted "
                "faster than written), `schema` (a name outside this catalogue), "
                "`rejected`/`http_4xx` (refused by InfluxDB), `spool_full`, "
                "`spool_error`, `unavailable` (no spool configured), `error` (a bug, logged)."
            ),
            emitted_by="adapters.influx_writer.InfluxWriter",
            tags=("reason",),
            fields={"count": INT},
            example_query=(
                'SELECT last("count") FROM "telemetry_dropped" WHERE $timeFilter '
                'GROUP BY time($__interval), "reason"'
            ),
        ),
        Measurement(
            name="analysis_trend",
            description=(
                "The analysis jobs' trend of one key metric over one `window`, one point "
                "per metric and window per run: the fitted slope per hour (`slope_per_h`, "
                "in the metric's unit), its `direction` (`rising`, `falling`, or `flat` "
                "when the slope is not told apart from 0), the `confidence` in that "
                "direction (0-1), the metric's `last` value, the `limit` it is held "
                "against (`connections`, `rss_bytes` and `delivery_p99_ms` against the "
                "live level's, as in `analysis_targets`, and `spool_bytes`; absent for the "
                "others), and `eta_s`, the seconds until it reaches the limit at this "
                "slope (absent when it never does). In the default retention policy; "
                "`GET /admin/api/performance/trends` reads the newest point of each "
                "series. How the jobs fit it: docs/operations.md."
            ),
            emitted_by="service_layer.trends.run_trends",
            tags=("metric", "window"),
            tag_values={"metric": ANALYSIS_METRICS, "window": TREND_WINDOWS},
            fields={"slope_per_h": FLOAT, "direction": STRING, "confidence": FLOAT,
                    "last": FLOAT, "limit": FLOAT, "eta_s": FLOAT},
            optional_fields=("limit", "eta_s"),
            example_query=(
                'SELECT "slope_per_h", "direction", "eta_s" FROM "analysis_trend" '
                "WHERE $timeFilter AND \"window\" = '24h' GROUP BY \"metric\""
            ),
        ),
        Measurement(
            name="analysis_regression",
            description=(
                "A lasting shift in a key metric, found by the change-point job: the "
                "point's time is the first point of the new regime, `direction` is `up` "
                "or `down`, with the mean before and after it, the change in % "
                "(`magnitude_pct`, signed) and `text`, one line for Grafana annotations. "
                "A metric that got noisier (or calmer), or whose trend bent, is one too, "
                "and `text` says which; for a bend, the means are where the old and the "
                "new slope lead. "
                "In the default retention policy; the optimization report lists those of "
                "its period."
            ),
            emitted_by="adapters.influx_analysis_writer.write_regressions",
            tags=("metric", "direction"),
            tag_values={"metric": ANALYSIS_METRICS, "direction": ("up", "down")},
            fields={"before_mean": FLOAT, "after_mean": FLOAT, "magnitude_pct": FLOAT,
                    "text": STRING},
            example_query=(
                'SELECT "text", "magnitude_pct" FROM "analysis_regression" WHERE $timeFilter'
            ),
        ),
        Measurement(
            name="analysis_health",
            description=(
                "Each component's health over the last 5 minutes of the whole cluster, "
                "one point per component per run of the health job: `status` is "
                "`healthy`, `warning` or `critical` (also as `level` 0, 1, 2, for "
                "alert rules) and `reason` names the figure past its threshold "
                "(thresholds: docs/operations.md). `GET /admin/api/performance/health` "
                "serves the newest point of each component beside the node's own checks."
            ),
            emitted_by="service_layer.analysis.run_health",
            tags=("component", "status"),
            tag_values={"component": ("delivery", "connections", "storage", "cache",
                                      "telemetry", "scheduler"),
                        "status": ("healthy", "warning", "critical")},
            fields={"level": INT, "reason": STRING},
            example_query=(
                'SELECT last("level") FROM "analysis_health" WHERE $timeFilter '
                'GROUP BY time($__interval), "component"'
            ),
        ),
        Measurement(
            name="job_run",
            description=(
                "One run of a scheduled analysis job (`python -m service jobs`, "
                "docs/operations.md): `outcome` is `ok`, `error` (the run raised: "
                "`error` gives the exception's type and message, at most 300 characters) "
                "or `skipped` (another node held the job's cluster-wide lock); "
                "`duration_ms` is the whole run, lock included, and `items` what it "
                "produced (points, events), 0 unless `ok`."
            ),
            emitted_by="service_layer.jobs.run_job",
            tags=("job", "outcome"),
            tag_values={"job": JOB_NAMES, "outcome": ("ok", "error", "skipped")},
            fields={"duration_ms": FLOAT, "items": INT, "error": STRING},
            optional_fields=("error",),
            example_query=(
                'SELECT max("duration_ms") FROM "job_run" WHERE $timeFilter '
                'GROUP BY time($__interval), "job", "outcome"'
            ),
        ),
        Measurement(
            name="analysis_targets",
            description=(
                "The live optimization level's limits, one point per run of the health "
                "job (every minute, whether or not there is data), for threshold lines "
                "and alerts that follow the level: the effective `level`, the delivery "
                "p99 target `delivery_p99_ms` (the longest batch wait, `low`'s twice "
                "`batch_timeout_ms` at most 200 ms, + 20 ms: what health judges p99 "
                "against), `connections` (`max_connections`, per node) and `rss_bytes` "
                "(`memory_budget_mb` in bytes, per node). The same limits as "
                "`analysis_trend`'s. Draw one with `fill(previous)`."
            ),
            emitted_by="service_layer.analysis_points.emit_targets",
            tags=(),
            fields={"level": STRING, "delivery_p99_ms": FLOAT, "connections": FLOAT,
                    "rss_bytes": FLOAT},
            example_query=(
                'SELECT last("delivery_p99_ms") FROM "raw"."analysis_targets" '
                "WHERE $timeFilter GROUP BY time($__interval) fill(previous)"
            ),
        ),
        Measurement(
            name="analysis_recommendation",
            description=(
                "The recommendations open at a run of the recommendations job (issued, "
                "neither applied nor dismissed), one point per `rule` (a rule has at most "
                "one open: a new proposal supersedes the last), written together at each "
                "run (every 5 minutes; one moment to within microseconds, as each "
                "process's timestamps are kept strictly increasing): its `id`, the "
                "proposed `change` (\"batch_timeout_ms 50 -> 75\", from the live value), "
                "the `evidence`, the `expected` effect, "
                "and `apply`, the `curl` that applies it (`SERVICE_URL`, the admin token "
                "in `$ADMIN_TOKEN`). A run with none open writes nothing: the open ones "
                "are those of the newest run."
            ),
            emitted_by="service_layer.analysis_points.emit_open_recommendations",
            tags=("rule",),
            tag_values={"rule": tuple(ADVICE_RULES)},
            fields={"id": STRING, "change": STRING, "evidence": STRING,
                    "expected": STRING, "apply": STRING},
            example_query=(
                'SELECT "id", "change", "evidence", "expected", "apply" '
                'FROM "raw"."analysis_recommendation" WHERE time > now() - 10m '
                'GROUP BY "rule" ORDER BY time DESC LIMIT 1'
            ),
        ),
        Measurement(
            name="analysis_impact",
            description=(
                "One point per impact measurement of a config change (the impact job, "
                "as it appends `impact_measured`): the `verdict`, the "
                "`recommendation` applied (its id, or \"\" for a manual change or a "
                "rollback), the `change` in effect (\"#12 batch_timeout_ms 50 -> 75\", "
                "the control log's seq first), `text` (the signs behind the verdict), "
                "each figure of the optimization report (`<figure>_before`, "
                "`<figure>_after`: delivery p99, deliveries, drops, cache hit rate, "
                "RSS and the figures the lever rules promise to move) over the window "
                "before the change and after it (absent when unknown: no telemetry, "
                "or the next change came too soon to measure), and "
                "`rolled_back` (1 when the jobs rolled the change back for it, else 0)."
            ),
            emitted_by="service_layer.analysis_points.emit_impact",
            tags=("verdict",),
            tag_values={"verdict": VERDICTS},
            fields={"recommendation": STRING, "change": STRING, "text": STRING,
                    **dict.fromkeys(IMPACT_FIGURE_FIELDS, FLOAT), "rolled_back": INT},
            optional_fields=IMPACT_FIGURE_FIELDS,
            example_query=(
                'SELECT "change", "delivery_p99_ms_before", "delivery_p99_ms_after", '
                '"rolled_back" FROM "raw"."analysis_impact" WHERE $timeFilter '
                'GROUP BY "verdict"'
            ),
        ),
        Measurement(
            name="notify_books",
            description=(
                "The node's books of the stream entries committed on it, cumulative since "
                "the process started, every 10 s, read in one step (no other work runs "
                "between the figures): `published` (entries committed here, one per "
                "recipient, as `notify_publish` `count`), their dispatch outcomes `live`, "
                "`queued`, `deferred` and `dropped` (as `notify_dispatch`), `pending` "
                "(committed, no outcome yet: waiting for the hand-off to delivery, or "
                "held back in offset order) and `unaccounted` = published - live - "
                "queued - deferred - dropped - pending, which must be 0: more is an "
                "entry whose outcome was lost, less one counted twice. Entries committed "
                "on other nodes are in their books (here they count as `relayed` in "
                "`notify_dispatch`). Per interval: "
                "`non_negative_difference(last(\"published\"))`."
            ),
            emitted_by="service_layer.books.Books",
            tags=(),
            fields={"published": INT, "live": INT, "queued": INT, "deferred": INT,
                    "dropped": INT, "pending": INT, "unaccounted": INT},
            example_query=(
                'SELECT last("unaccounted") FROM "raw"."notify_books" WHERE $timeFilter '
                'GROUP BY time($__interval), "node"'
            ),
        ),
    )
}


def measurement(name: str) -> Measurement:
    return CATALOGUE[name]


# Rollups: the rollups job (service_layer.rollups) downsamples the raw points of
# these measurements into 1-minute and 1-hour buckets, written under the same
# measurement, tag and field names to the retention policies below, so a query
# switches resolution by naming the policy (FROM "rollup_1m"."notify_delivery").
# Per field, the aggregate over the bucket's raw points of one series (node,
# role and the measurement's tags): ``sum`` and ``max`` are exact; ``mean`` (of
# a gauge: always a float); ``last`` (of a counter cumulative since start);
# ``p50``/``p95``/``p99``: that percentile (nearest rank) of the per-interval
# percentiles, the way the optimization report reads p99 over a window.
ROLLUP_POLICIES = {"1m": "rollup_1m", "1h": "rollup_1h"}
ROLLUP_AGGREGATES = ("sum", "max", "mean", "last", "p50", "p95", "p99")
ROLLUPS: dict[str, dict[str, str]] = {
    "notify_publish": {"count": "sum", "requests": "sum", "payload_bytes": "sum",
                       "duration_ms_sum": "sum", "duration_ms_max": "max"},
    "notify_dispatch": {"count": "sum"},
    "notify_delivery": {"count": "sum", "batches": "sum", "bytes": "sum", "wire_bytes": "sum",
                        "latency_ms_p50": "p50", "latency_ms_p95": "p95",
                        "latency_ms_p99": "p99", "latency_ms_max": "max",
                        "wait_ms_p50": "p50", "wait_ms_p95": "p95", "wait_ms_p99": "p99",
                        "wait_ms_max": "max"},
    "notify_ack": {"count": "sum", "acks": "sum"},
    "notify_drop": {"count": "sum"},
    "notify_throttle": {"count": "sum", "recipients": "sum"},
    "notify_reload": {"count": "sum"},
    "notify_queues": {"samples": "sum", "queued_bytes_max": "max",
                      "backlogged_connections_max": "max"},
    "notify_connection": {"count": "sum", "active": "max"},
    "notify_ping": {"connections": "mean", "awaiting_pong": "mean", "late_pong": "max"},
    "process": {"rss_bytes": "mean", "cpu_seconds": "last", "open_fds": "mean",
                "gc_gen0": "last", "gc_gen1": "last", "gc_gen2": "last",
                "gc_pause_ms": "sum", "gc_pause_ms_max": "max", "handler_greenlets": "mean",
                "uptime_s": "last"},
    "db_query": {"count": "sum", "duration_ms_sum": "sum", "duration_ms_max": "max",
                 "rows": "sum", "slow": "sum"},
    "db_write_batch": {"count": "sum", "batches": "sum", "duration_ms_sum": "sum",
                       "size_max": "max", "duration_ms_max": "max"},
    "db_pool": {"size": "last", "checked_out": "mean", "overflow": "mean", "waits": "sum",
                "wait_ms_sum": "sum", "wait_ms_max": "max"},
    "cache": {"hits": "sum", "misses": "sum", "evictions": "sum", "evictions_ttl": "sum",
              "evictions_bytes": "sum", "invalidations": "sum", "entries": "mean",
              "bytes": "mean"},
    "telemetry_self": {"emitted": "last", "written": "last", "spooled": "last",
                       "dropped": "last", "queued": "mean", "spool_bytes": "mean",
                       "write_ms": "mean"},
    "telemetry_dropped": {"count": "last"},
    "notify_books": {"published": "last", "live": "last", "queued": "last",
                     "deferred": "last", "dropped": "last", "pending": "last",
                     "unaccounted": "last"},
    "runtime_leaks": {"alive": "mean", "leaked": "max"},
    "job_run": {"duration_ms": "max", "items": "sum"},
}


def rollup_fields(name: str) -> dict[str, FieldType]:
    """The fields of a measurement's rollups and their types: a mean is a
    float, every other aggregate keeps the raw field's type."""
    fields = CATALOGUE[name].fields
    return {f: FieldType.FLOAT if agg == "mean" else fields[f]
            for f, agg in ROLLUPS.get(name, {}).items()}


@dataclass(frozen=True)
class TallySpec:
    """How the hot path adds to a summary measurement: up to four summed
    fields and up to two maxima (``peaks``), passed by position in this
    order. Positions instead of a dict per call keep a tally near 0.2 µs.
    ``detail`` names the per-entry values observed into histograms (their
    ``_p50``, ``_p95`` and ``_p99`` fields)."""

    measurement: str
    sums: tuple[str, ...]
    peaks: tuple[str, ...] = ()
    detail: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= len(self.sums) <= 4 or len(self.peaks) > 2:
            raise ValueError(f"{self.measurement}: one to four sums and at most two peaks")


PUBLISHED = TallySpec(
    "notify_publish",
    ("count", "requests", "payload_bytes", "duration_ms_sum"),
    peaks=("duration_ms_max",),
)
DISPATCHED = TallySpec("notify_dispatch", ("count",))
DELIVERED = TallySpec("notify_delivery", ("count", "batches", "bytes", "wire_bytes"),
                      peaks=("latency_ms_max", "wait_ms_max"), detail=("latency_ms", "wait_ms"))
ACKED = TallySpec("notify_ack", ("count", "acks"))
DROPPED = TallySpec("notify_drop", ("count",))
THROTTLED = TallySpec("notify_throttle", ("count", "recipients"))
RELOADED = TallySpec("notify_reload", ("count",))
QUEUES = TallySpec("notify_queues", ("samples",),
                   peaks=("queued_bytes_max", "backlogged_connections_max"))
WRITE_BATCHES = TallySpec("db_write_batch", ("count", "batches", "duration_ms_sum"),
                          peaks=("size_max", "duration_ms_max"))
TALLIES = (PUBLISHED, DISPATCHED, DELIVERED, ACKED, DROPPED, THROTTLED, RELOADED, QUEUES,
           WRITE_BATCHES)
