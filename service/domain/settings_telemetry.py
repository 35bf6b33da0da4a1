"""Settings table, telemetry and analysis: InfluxDB, the spool, retention,
the analysis jobs. Rows of service.domain.settings_table (see
service.domain.setting). The jobs' intervals and windows are parsed by
service.domain.job_settings, whose defaults these rows show."""

from __future__ import annotations

from service.domain.job_settings import (
    DEFAULT_INTERVALS,
    MAX_INTERVAL_S,
    MAX_WINDOW_S,
    MIN_INTERVAL_S,
    MIN_WINDOW_S,
    JobSettings,
)
from service.domain.setting import Kind, Setting, Unit

SECTION = "Telemetry and analysis"
JOBS = "service.domain.job_settings"  # reads the four variables of the analysis jobs
_JOBS = JobSettings()

SETTINGS: tuple[Setting, ...] = (
    Setting("INFLUX_URL", Kind.TEXT, "InfluxDB's 1.x-compatible HTTP API (1.x, 2.x and 3.x "
            "all serve it)", default="http://127.0.0.1:8086"),
    Setting("INFLUX_DB", Kind.TEXT, "database (1.x) or bucket with its DBRP mapping "
            "(2.x/3.x)", default="notify"),
    Setting("INFLUX_TOKEN", Kind.TEXT, "sent as `Authorization: Token …` (InfluxDB 2.x/3.x)",
            default=None),
    Setting("INFLUX_USERNAME", Kind.TEXT, "1.x basic auth, the user name; used when "
            "`INFLUX_TOKEN` is unset", default=None),
    Setting("INFLUX_PASSWORD", Kind.TEXT, "1.x basic auth, the password; used when "
            "`INFLUX_TOKEN` is unset", default=None),
    Setting("TELEMETRY_ENABLED", Kind.FLAG, "`0` measures nothing and writes nothing to "
            "InfluxDB: the baseline the benchmarks compare against. `/metrics` totals then "
            "stay 0", default=True),
    Setting("TELEMETRY_SPOOL_MAX_BYTES", Kind.INT,
            "disk spool per process for telemetry while InfluxDB is unreachable; when full, "
            "the oldest batches are dropped and counted", default=256 << 20, unit=Unit.BYTES),
    Setting("TELEMETRY_RETRY_MAX_S", Kind.FLOAT,
            "longest wait between two attempts to reach InfluxDB (exponential backoff from "
            "0.5 s, with jitter)", default=30.0, unit=Unit.SECONDS),
    Setting("INFLUX_RAW_RETENTION", Kind.DURATION,
            "how long raw telemetry is kept (retention policy `raw`, the default one on 1.x; "
            "every write and raw read names it, see "
            "[querying](querying.md#on-influxdb-2x-and-3x)); InfluxQL durations: `12h`, `7d`, "
            "`52w`, `INF`", default="7d"),
    Setting("INFLUX_ROLLUP_1M_RETENTION", Kind.DURATION,
            "retention policy `rollup_1m`, for the analysis jobs' 1-minute rollups",
            default="90d"),
    Setting("INFLUX_ROLLUP_1H_RETENTION", Kind.DURATION,
            "retention policy `rollup_1h`, for 1-hour rollups", default="730d"),
    Setting("JOB_INTERVALS", Kind.SPECIAL,
            "seconds between two runs of each analysis job of `python -m service jobs`, as "
            "`job=seconds` pairs, comma-separated; jobs not named keep their default "
            f"({MIN_INTERVAL_S:g}-{MAX_INTERVAL_S:g} s). An unknown job name is refused at "
            "start ([analysis jobs](operations.md#analysis-jobs))",
            default=DEFAULT_INTERVALS, minimum=MIN_INTERVAL_S, maximum=MAX_INTERVAL_S,
            unit=Unit.SECONDS, read_by=JOBS),
    Setting("HEALTH_WINDOW_S", Kind.SPECIAL,
            "seconds of telemetry the `health` job judges (10 s to 7 days, like the two below)",
            default=_JOBS.health_window.total_seconds(), minimum=MIN_WINDOW_S,
            maximum=MAX_WINDOW_S, unit=Unit.SECONDS, read_by=JOBS),
    Setting("ADVICE_WINDOW_S", Kind.SPECIAL,
            "seconds of telemetry the recommendation rules read "
            "([rules](operations.md#health-recommendations-and-measured-impact))",
            default=_JOBS.advice_window.total_seconds(), minimum=MIN_WINDOW_S,
            maximum=MAX_WINDOW_S, unit=Unit.SECONDS, read_by=JOBS),
    Setting("IMPACT_WINDOW_S", Kind.SPECIAL,
            "seconds each side of a config change the `impact` job compares, measured once "
            "that long has passed since the change; an after-window cut to under a third of it "
            "by the next change is `inconclusive`. Shorter windows judge sooner on fewer "
            "points: `bench tuning` runs with 60 s",
            default=_JOBS.impact_window.total_seconds(), minimum=MIN_WINDOW_S,
            maximum=MAX_WINDOW_S, unit=Unit.SECONDS, read_by=JOBS),
    Setting("AUTO_ROLLBACK", Kind.FLAG,
            "the jobs' impact check rolls back a change followed by a clear regression (see "
            "[operations](operations.md#health-recommendations-and-measured-impact)); `0` only "
            "records the verdict", default=True),
)
