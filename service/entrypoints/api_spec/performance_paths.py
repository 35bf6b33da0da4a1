"""/admin/api/performance/*: the older design's admin routes, kept (admin
token). Pure data."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from service.entrypoints.api_spec.builders import answer, body, param, ref
from service.entrypoints.api_spec.common import ADMIN, errors
from service.entrypoints.api_spec.control_paths import ISSUED_ID
from service.service_layer import reports

INT0 = {"type": "integer", "minimum": 0}
TIME = {"type": "string", "format": "date-time"}
STATUS = {"type": "string", "enum": ["healthy", "warning", "critical"]}


def _int(description: str) -> dict[str, Any]:
    return {**INT0, "description": description}


def _newest(most: int) -> dict[str, Any]:
    return {"type": "boolean", "description": f"only the newest {most} are listed"}


METRICS: dict[str, Any] = {
    "type": "object",
    "description": "Live state of this node.",
    "required": ["node", "connections", "users_online", "totals", "rates", "latency_ms",
                 "cache", "telemetry", "storage", "process", "backpressure"],
    "properties": {
        "node": {"type": "string", "description": "the node id"},
        "uptime_s": {"type": "number", "description": "seconds since start"},
        "connections": _int("open Socket.IO connections"),
        "users_online": _int("users with at least one open connection"),
        "totals": {
            "type": "object", "description": "since start",
            "required": ["published", "delivered", "acked"],
            "properties": {"published": _int("entries published"),
                           "delivered": _int("entries sent to clients"),
                           "acked": _int("entries newly acknowledged")}},
        "rates": {
            "type": "object",
            "description": "per second, over about the last minute (from samples this "
                           "route takes, at most one a second; before a second-old one, "
                           "since start)",
            "required": ["window_s", "published_per_s", "delivered_per_s", "acked_per_s"],
            "properties": {"window_s": {"type": "number", "description": "seconds covered"},
                           "published_per_s": {"type": "number"},
                           "delivered_per_s": {"type": "number"},
                           "acked_per_s": {"type": "number"}}},
        "latency_ms": {
            "type": ["object", "null"],
            "description": "publish-to-send latency over the last telemetry interval "
                           "(about a second) that delivered anything, `age_s` seconds ago, "
                           "across priorities and modes: `p50` is the count-weighted mean "
                           "of theirs, `p99` and `max` the highest; null before the first "
                           "delivery (or with telemetry off)",
            "properties": {"count": INT0, "age_s": {"type": "number"},
                           "p50": {"type": "number"},
                           "p99": {"type": "number"}, "max": {"type": "number"}}},
        "cache": {
            "type": "object",
            "description": "the query caches since start: `global` (values shared by "
                           "everyone) and `user` (users' stream pages, history pages and "
                           "unread counts)",
            "additionalProperties": {"type": "object", "properties": {
                "hit_rate": {"type": ["number", "null"], "description": "null before "
                             "the first lookup"},
                "hits": INT0, "misses": INT0, "entries": INT0, "bytes": INT0}}},
        "telemetry": {
            "type": "object", "description": "records of the telemetry pipeline",
            "required": ["emitted", "written", "spooled", "dropped", "queued", "in_flight",
                         "backlog", "spool_bytes", "influx_reachable"],
            "properties": {
                "emitted": _int("emitted by the runtime"),
                "written": _int("written to InfluxDB"),
                "spooled": _int("ever written to the disk spool"),
                "dropped": _int("dropped"),
                "dropped_by_reason": {"type": "object", "additionalProperties": INT0,
                                      "description": "`dropped`, by reason"},
                "queued": _int("in memory"),
                "in_flight": _int("being written"),
                "backlog": _int("records in the disk spool"),
                "spool_bytes": _int("bytes of the disk spool"),
                "influx_reachable": {"type": "boolean",
                                     "description": "whether the last write reached InfluxDB"},
            }},
        "storage": {"type": "object", "required": ["kind"], "properties": {
            "kind": {"type": "string", "enum": ["sqlite", "postgresql"],
                     "description": "where the logs live"},
            "statements": {
                "type": ["object", "null"],
                "description": "database statements by operation over the last 10 s "
                               "interval: `count`, `mean_ms`, `max_ms`, `slow` (null "
                               "with telemetry off)",
                "additionalProperties": {"type": "object", "properties": {
                    "count": INT0, "mean_ms": {"type": "number"},
                    "max_ms": {"type": "number"}, "slow": INT0}}}}},
        "process": {"type": "object",
                    "required": ["rss_bytes", "cpu_seconds", "open_fds", "handler_greenlets"],
                    "properties": {
                        "rss_bytes": _int("resident memory"),
                        "cpu_seconds": {"type": "number", "minimum": 0,
                                        "description": "CPU time used"},
                        "open_fds": {"type": "integer", "minimum": -1,
                                     "description": "open file descriptors (-1: unknown)"},
                        "handler_greenlets": _int(
                            "greenlets serving a request or a WebSocket: about the "
                            "connections, plus requests in flight")}},
        "backpressure": {
            "type": ["object", "null"],
            "description": "the node's backpressure (see [operations](operations.md"
                           "#backpressure-and-the-memory-budget)); `refused` publishes and "
                           "`deferred` entries count the current episode",
            "properties": {
                "engaged": {"type": "boolean"}, "over_memory_budget": {"type": "boolean"},
                "queued_bytes": _int("bytes waiting for clients"),
                "memory_budget_bytes": _int("the memory budget"),
                "high_water_bytes": _int("queued bytes past which it engages"),
                "refused": _int("publishes refused"), "deferred": _int("entries deferred")}},
        "leaks": {"type": "object",
                  "description": "per kind of tracked object: `alive` now, and `leaked` "
                                 "(released, past their grace, still referenced)",
                  "additionalProperties": {"type": "object", "properties": {
                      "alive": INT0, "leaked": INT0}}},
    },
}

HEALTH: dict[str, Any] = {
    "type": "object",
    "required": ["status", "node", "components"],
    "properties": {
        "status": {**STATUS, "description": "the worst of the components'"},
        "node": {"type": "string"},
        "components": {
            "type": "object", "required": ["delivery", "storage", "telemetry"],
            "description": "`delivery`, `storage` and `telemetry`, each "
                           "`{status: healthy|warning|critical, reason}`",
            "additionalProperties": ref("ComponentHealth")},
        "cluster": {
            "type": ["object", "null"],
            "description": "the health job's newest verdict for the whole cluster, from "
                           "InfluxDB (`analysis_health`, thresholds in "
                           "[operations](operations.md#health-recommendations-and-measured-"
                           "impact)): `status` (null before its first run) and `components` "
                           "(`delivery`, `connections`, `storage`, `cache`, `telemetry`, "
                           "`scheduler`, each `{status, reason, at}`); null when InfluxDB "
                           "cannot be read, with `cluster_unavailable` saying why",
            "properties": {
                "status": {"type": ["string", "null"]},
                "components": {"type": "object", "additionalProperties": {
                    "type": "object", "properties": {
                        "status": STATUS, "reason": {"type": "string"},
                        "at": {"type": "string"}}}}}},
        "cluster_unavailable": {"type": "string"},
    },
}

TREND: dict[str, Any] = {
    "type": "object",
    "description": "The analysis jobs' trend of one key metric over one window (measurement "
                   "`analysis_trend`, see [telemetry](telemetry.md)).",
    "required": ["metric", "window", "direction"],
    "properties": {
        "metric": {"type": "string", "description": "e.g. `delivery_p99_ms`, `rss_bytes`"},
        "window": {"type": "string", "description": "`1h`, `24h` or `7d`"},
        "direction": {"type": "string", "enum": ["rising", "falling", "flat"],
                      "description": "`flat` when the slope is not told apart from 0"},
        "slope_per_h": {"type": "number", "description": "per hour, in the metric's unit"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "last": {"type": "number", "description": "the metric's last value"},
        "limit": {"type": ["number", "null"], "description": "what it is held against"},
        "eta_s": {"type": ["number", "null"],
                  "description": "seconds until it reaches `limit` at this slope (absent or "
                                 "null: never)"},
    },
}

REPORT: dict[str, Any] = {
    "type": "object",
    "description": "The period, each config change in it with its measured effect, the "
                   "regressions found, and the recommendations still open.",
    "required": ["period", "generated_at", "changes", "regressions", "open_recommendations"],
    "properties": {
        "period": {"type": "object", "required": ["since", "until"], "properties": {
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"}}},
        "generated_at": {"type": "string", "format": "date-time"},
        "window_s": {"type": "number", "description": "seconds measured each side of a "
                                                      "change (cut short at the neighbouring "
                                                      "changes and at now)"},
        "min_window_s": {"type": "number", "description": "shorter windows are not measured "
                                                          "(null metrics)"},
        "metrics": {"type": "array", "description": "the key metrics compared: `{key, label, "
                                                    "unit}`",
                    "items": {"type": "object", "required": ["key", "unit"]}},
        "changes": {"type": "array", "items": {
            "type": "object", "description": "a control event that changed the config, with "
                                             "`windows` (before, after) and `effect`: per "
                                             "metric `{before, after, delta_pct}`",
            "required": ["seq", "at", "type", "actor", "what"],
            "properties": {"seq": {"type": "integer"},
                           "at": {"type": "string", "format": "date-time"},
                           "type": {"type": "string"}, "actor": {"type": "string"},
                           "what": {"type": "string"}}}},
        "changes_total": _int("config changes in the period"),
        "changes_truncated": _newest(reports.MAX_CHANGES),
        "regressions": {"type": "array", "description": "regressions the analysis jobs found "
                                                        "in the period, oldest first",
                        "items": {"type": "object"}},
        "regressions_truncated": _newest(reports.MAX_REGRESSIONS),
        "open_recommendations": {"type": "array",
                                 "description": f"the newest {reports.MAX_RECOMMENDATIONS} "
                                                "still `issued`, oldest first",
                                 "items": {"type": "object", "required": ["id", "status"]}},
        "open_recommendations_total": _int("recommendations waiting for a decision"),
    },
}

DEFAULT_HOURS = reports.DEFAULT_PERIOD / timedelta(hours=1)
REPORT_DESCRIPTION = f"""\
What was changed in the configuration over a period, and what followed: each \
config change (a level set, parameters overridden, a recommendation applied, \
a rollback) with who made it and why, and the key metrics (delivery rate and \
p99, drops, cache hit rate, memory) measured before and after it; the \
regressions the analysis jobs found; and the recommendations still waiting \
for a decision.

`since` and `until` are ISO 8601 (no offset means UTC; a bad one is a 422 \
naming it); without them, the last {DEFAULT_HOURS:g} hours up to now. `since` \
must be before `until`, and the period at most {reports.MAX_PERIOD.days} days \
(else 422, `field: since`). `format=markdown` answers the same report as \
`text/markdown`, for a ticket or a chat."""

PATHS: dict[str, Any] = {
    "/admin/api/performance/metrics": {"get": {
        "operationId": "performanceMetrics", "tags": ["Older admin routes"], "security": ADMIN,
        "summary": "Live state of this node",
        "responses": {"200": answer("this node's counters", ref("Metrics")),
                      **errors("Unauthorized")},
    }},
    "/admin/api/performance/health": {"get": {
        "operationId": "performanceHealth", "tags": ["Older admin routes"], "security": ADMIN,
        "summary": "Component health",
        "description": "`{status, node, components, cluster}`: this node's own checks, where "
                       "each of `delivery`, `storage` and `telemetry` is `{status: "
                       "healthy|warning|critical, reason}`, and `cluster`, the health "
                       "job's view of the whole cluster from InfluxDB.",
        "responses": {"200": answer("the components' health", ref("Health"), {
            "status": "warning", "node": "web-1-8000", "components": {
                "delivery": {"status": "healthy", "reason": "120 connection(s)"},
                "storage": {"status": "healthy", "reason": "the notification log answers"},
                "telemetry": {"status": "warning", "reason": "InfluxDB unreachable, ..."}}}),
            **errors("Unauthorized")},
    }},
    "/admin/api/performance/trends": {"get": {
        "operationId": "performanceTrends", "tags": ["Older admin routes"], "security": ADMIN,
        "summary": "Trends of the key metrics",
        "description": "The newest trend of each key metric and window, as the analysis jobs "
                       "last wrote them to InfluxDB. 503 when InfluxDB cannot be reached.",
        "responses": {
            "200": answer("the trends", {"type": "object", "required": ["trends"],
                                         "properties": {"trends": {
                                             "type": "array", "items": ref("Trend")}}},
                          {"trends": [{"metric": "rss_bytes", "window": "24h",
                                       "direction": "rising", "slope_per_h": 1048576,
                                       "confidence": 0.93, "last": 402653184,
                                       "limit": 536870912, "eta_s": 460800}]}),
            **errors("Unauthorized", "StorageUnavailable")},
    }},
    "/admin/api/performance/recommendations": {"get": {
        "operationId": "performanceRecommendations", "tags": ["Older admin routes"],
        "security": ADMIN,
        "summary": "Recommendations (same as `GET /api/v1/recommendations`)",
        "parameters": [ref("RecommendationStatus", "parameters")],
        "responses": {"200": answer("in the order issued", ref("RecommendationList")),
                      **errors("Unauthorized", "InvalidInput")},
    }},
    "/admin/api/performance/apply-recommendation": {"post": {
        "operationId": "performanceApplyRecommendation", "tags": ["Older admin routes"],
        "security": ADMIN,
        "summary": "Apply a recommendation (as `POST /api/v1/recommendations/{id}/apply`)",
        "description": "Applies the change the recommendation carries, live on every node. "
                       "Applying an applied one changes nothing and answers 200 again; a "
                       "dismissed one is a 409, an unknown id a 404.",
        "requestBody": body({
            "type": "object", "additionalProperties": False, "required": ["recommendation_id"],
            "properties": {"recommendation_id": {**ISSUED_ID,
                                                 "description": "its `id`, as listed"},
                           "reason": ref("Reason")}},
            {"recommendation_id": "rec-2026-11-26-batch", "reason": "p99 is over budget"}),
        "responses": {"200": answer("the recommendation and the config now live",
                                    ref("Decision")),
                      **errors("MalformedRequest", "Unauthorized", "NotFound", "Conflict",
                               "PayloadTooLarge", "InvalidInput")},
    }},
    "/admin/api/performance/optimization-report": {"get": {
        "operationId": "performanceOptimizationReport", "tags": ["Older admin routes"],
        "security": ADMIN,
        "summary": "What was changed, and what followed",
        "description": REPORT_DESCRIPTION,
        "parameters": [
            param("since", "query", TIME, "start of the period (ISO 8601)"),
            param("until", "query", TIME, "end of the period (ISO 8601); default now"),
            param("format", "query",
                  {"type": "string", "enum": ["json", "markdown"], "default": "json"},
                  "`json` (default) or `markdown`"),
        ],
        "responses": {
            "200": {"description": "the report",
                    "content": {"application/json": {"schema": ref("OptimizationReport")},
                                "text/markdown": {"schema": {"type": "string"}}}},
            **errors("Unauthorized", "InvalidInput", "StorageUnavailable")},
    }},
}

SCHEMAS: dict[str, Any] = {
    "Metrics": METRICS,
    "Health": HEALTH,
    "ComponentHealth": {"type": "object", "required": ["status", "reason"],
                        "properties": {"status": STATUS, "reason": {"type": "string"}}},
    "Trend": TREND,
    "OptimizationReport": REPORT,
}
