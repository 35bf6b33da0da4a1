"""The telemetry pipeline's own counters: what it emitted, wrote, spooled
and dropped."""

from __future__ import annotations

from service.domain.measurements.measurement import FLOAT, INT, Field, Measurement

MEASUREMENTS: tuple[Measurement, ...] = (
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
        field_specs={
            "emitted": Field(INT, "last"),
            "written": Field(INT, "last"),
            "spooled": Field(INT, "last"),
            "dropped": Field(INT, "last"),
            "queued": Field(INT, "mean"),
            "spool_bytes": Field(INT, "mean"),
            "write_ms": Field(FLOAT, "mean"),
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
        field_specs={
            "count": Field(INT, "last"),
        },
        example_query=(
            'SELECT last("count") FROM "telemetry_dropped" WHERE $timeFilter '
            'GROUP BY time($__interval), "reason"'
        ),
    ),
)
