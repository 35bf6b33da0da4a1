"""The process: its resources (memory, CPU, GC, file descriptors, handler
greenlets) and per-connection objects kept alive after their connection."""

from __future__ import annotations

from service.domain.measurements.measurement import FLOAT, INT, Field, Measurement

MEASUREMENTS: tuple[Measurement, ...] = (
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
        field_specs={
            "alive": Field(INT, "mean"),
            "leaked": Field(INT, "max"),
        },
        example_query=(
            'SELECT max("leaked") FROM "runtime_leaks" WHERE $timeFilter '
            'GROUP BY time($__interval), "kind"'
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
        field_specs={
            "rss_bytes": Field(INT, "mean"),
            "cpu_seconds": Field(FLOAT, "last"),
            "open_fds": Field(INT, "mean"),
            "gc_gen0": Field(INT, "last"),
            "gc_gen1": Field(INT, "last"),
            "gc_gen2": Field(INT, "last"),
            "gc_pause_ms": Field(FLOAT, "sum"),
            "gc_pause_ms_max": Field(FLOAT, "max"),
            "handler_greenlets": Field(INT, "mean"),
            "uptime_s": Field(FLOAT, "last"),
        },
        example_query=(
            'SELECT max("rss_bytes") FROM "process" WHERE $timeFilter '
            'GROUP BY time($__interval), "node", "role"'
        ),
    ),
)
