"""Publishing: the publish requests accepted, and those refused with 429."""

from __future__ import annotations

from service.domain.measurements.measurement import FLOAT, INT, Field, Measurement

PRIORITIES = ("low", "normal", "high", "critical")

MEASUREMENTS: tuple[Measurement, ...] = (
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
        field_specs={
            "count": Field(INT, "sum"),
            "requests": Field(INT, "sum"),
            "payload_bytes": Field(INT, "sum"),
            "duration_ms_sum": Field(FLOAT, "sum"),
            "duration_ms_max": Field(FLOAT, "max"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") FROM "notify_publish" WHERE $timeFilter '
            'GROUP BY time($__interval), "priority"'
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
        emitted_by="service_layer.publish_throttle.PublishThrottle, "
                   "service_layer.backpressure.Backpressure",
        tags=("priority", "reason"),
        tag_values={"priority": PRIORITIES, "reason": ("rate", "backpressure")},
        field_specs={
            "count": Field(INT, "sum"),
            "recipients": Field(INT, "sum"),
        },
        kind="summary",
        example_query=(
            'SELECT sum("count") FROM "notify_throttle" WHERE $timeFilter '
            'GROUP BY time($__interval), "priority"'
        ),
    ),
)
