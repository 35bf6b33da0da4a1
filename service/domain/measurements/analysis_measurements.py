"""Analysis: what the scheduled jobs find (trends, regressions, health,
targets, recommendations, impact of changes) and each job's runs."""

from __future__ import annotations

from service.domain.advice import RULES as ADVICE_RULES
from service.domain.impact import VERDICTS
from service.domain.job_names import JOB_NAMES
from service.domain.measurements.measurement import FLOAT, INT, STRING, Field, Measurement
from service.domain.report import METRIC_KEYS as REPORT_FIGURES

# The key metrics the analysis jobs follow (``analysis_trend``, ``analysis_regression``).
# The name gives the unit: ``_ms``, ``_bytes``, ``_rate`` per second (``cache_hit_rate``
# 0-1), ``connections`` a count.
ANALYSIS_METRICS = ("delivery_p99_ms", "delivery_rate", "publish_rate", "drop_rate",
                    "connections", "rss_bytes", "cache_hit_rate", "db_query_ms", "spool_bytes")
TREND_WINDOWS = ("1h", "24h", "7d")
# ``analysis_impact``: each figure of the optimization report, before and after.
IMPACT_FIGURE_FIELDS = tuple(f"{figure}_{side}" for figure in REPORT_FIGURES
                             for side in ("before", "after"))

MEASUREMENTS: tuple[Measurement, ...] = (
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
        emitted_by="service_layer.trend_job.run_trends",
        tags=("metric", "window"),
        tag_values={"metric": ANALYSIS_METRICS, "window": TREND_WINDOWS},
        field_specs={
            "slope_per_h": Field(FLOAT),
            "direction": Field(STRING),
            "confidence": Field(FLOAT),
            "last": Field(FLOAT),
            "limit": Field(FLOAT),
            "eta_s": Field(FLOAT),
        },
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
        field_specs={
            "before_mean": Field(FLOAT),
            "after_mean": Field(FLOAT),
            "magnitude_pct": Field(FLOAT),
            "text": Field(STRING),
        },
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
        field_specs={
            "level": Field(INT),
            "reason": Field(STRING),
        },
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
        emitted_by="service_layer.job_runs.run_job",
        tags=("job", "outcome"),
        tag_values={"job": JOB_NAMES, "outcome": ("ok", "error", "skipped")},
        field_specs={
            "duration_ms": Field(FLOAT, "max"),
            "items": Field(INT, "sum"),
            "error": Field(STRING),
        },
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
        field_specs={
            "level": Field(STRING),
            "delivery_p99_ms": Field(FLOAT),
            "connections": Field(FLOAT),
            "rss_bytes": Field(FLOAT),
        },
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
        field_specs={
            "id": Field(STRING),
            "change": Field(STRING),
            "evidence": Field(STRING),
            "expected": Field(STRING),
            "apply": Field(STRING),
        },
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
        field_specs={
            "recommendation": Field(STRING),
            "change": Field(STRING),
            "text": Field(STRING),
            **dict.fromkeys(IMPACT_FIGURE_FIELDS, Field(FLOAT)),
            "rolled_back": Field(INT),
        },
        optional_fields=IMPACT_FIGURE_FIELDS,
        example_query=(
            'SELECT "change", "delivery_p99_ms_before", "delivery_p99_ms_after", '
            '"rolled_back" FROM "raw"."analysis_impact" WHERE $timeFilter '
            'GROUP BY "verdict"'
        ),
    ),
)
