"""What the provisioned dashboards must hold, as data: their uids and
files, the grid and schema Grafana 11.2 reads, the Overview's panels the
alert rules link to, the figures whose limit follows the level, and the
reasoned exceptions. The checkers (dashboard_layout_checks.py,
dashboard_query_checks.py) and tests/unit/test_dashboards.py read them."""

from __future__ import annotations

DASHBOARDS = {
    "notify-overview": "overview.json",  # the control API redirects to /d/notify-overview
    "notify-delivery": "delivery.json",
    "notify-resources": "resources.json",
    "notify-storage": "storage.json",
    "notify-optimization": "optimization.json",
    "notify-telemetry": "telemetry.json",
}
GRID_COLUMNS = 24
SCHEMA_VERSION = 39
GRAFANA_BUILTIN_DATASOURCE = "-- Grafana --"  # the built-in annotations' source
# Variables Grafana defines for links and text, beside those of queries.
LINK_BUILTINS = {"__url_time_range", "__all_variables", "__data", "__field", "__series",
                 "__value"}
# Shell variables in the commands text panels show: Grafana leaves a $NAME it
# does not know as written (TemplateSrv.replace), and the commands need them.
SHELL_VARIABLES = {"ADMIN_TOKEN"}
RP_MIN_INTERVAL = "${rp:text}"
# Targets that read a rolled-up measurement from raw whatever $rp says, and why
# (besides panels with a relative time of their own: their window is fixed and
# recent, the rollups' lag would show, so they read raw).
RAW_READS = {
    ("notify-optimization", "Analysis job runs by outcome"):
        "a count of runs needs the raw points: job_run's rollups keep duration_ms and "
        "items, not a count",
    ("notify-optimization", "Failed job runs"):
        "the error text is not rolled up; a table of the newest 20 failures, not a series",
}
# Fields that points written before a change lack, though the catalogue now
# has them on every point: raw keeps such points for 7 days.
HISTORICALLY_ABSENT = {
    ("config_change", "actor"): "start-up points before issue 19 carry no actor",
}
# Figures whose limit is set by the optimization level, and where the jobs
# write that limit (analysis_targets, every minute).
LEVEL_FIGURES = {
    **{("notify_delivery", f): "delivery_p99_ms"
       for f in ("latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "latency_ms_max",
                 "wait_ms_p50", "wait_ms_p95", "wait_ms_p99", "wait_ms_max")},
    ("notify_ping", "connections"): "connections",
    ("notify_connection", "active"): "connections",
    ("cluster", "connections"): "connections",
    ("process", "rss_bytes"): "rss_bytes",
    ("notify_backpressure", "rss_bytes"): "rss_bytes",
    ("notify_backpressure", "memory_budget_bytes"): "rss_bytes",
}
TARGETS_MEASUREMENT = "analysis_targets"
# The Overview's panels the alert rules and the docs name (the contracts of
# issue 19): id -> (type, a word of its title). Others have ids >= 40.
OVERVIEW_PANELS = {
    1: ("alertlist", "alerts"), 2: ("table", "health"), 3: ("table", "recommendations"),
    4: ("stat", "level"), 10: ("stat", "delivery rate"), 11: ("stat", "p99"),
    12: ("stat", "connections"), 13: ("stat", "backpressure"), 14: ("stat", "429"),
    15: ("stat", "queue"), 16: ("stat", "cache hit rate"), 17: ("stat", "statement time"),
    18: ("stat", "job failures"), 19: ("stat", "unaccounted"), 20: ("table", "books"),
    30: ("timeseries", "publish rate"), 31: ("timeseries", "delivery rate"),
    32: ("timeseries", "p99"), 33: ("timeseries", "drops"),
    34: ("timeseries", "connections"), 35: ("state-timeline", "health"),
    36: ("timeseries", "books"),
}
LEGEND_CALCS = ({"lastNotNull", "last"}, {"mean"}, {"max"})
