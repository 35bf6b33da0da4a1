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

    @property
    def all_tags(self) -> tuple[str, ...]:
        return COMMON_TAGS + self.tags


INT, FLOAT = FieldType.INTEGER, FieldType.FLOAT
PRIORITIES = ("low", "normal", "high", "critical")

CATALOGUE: dict[str, Measurement] = {
    m.name: m
    for m in (
        Measurement(
            name="notify_publish",
            description=(
                "One point per accepted publish request. `count` is the number of "
                "stream entries it created (one per recipient)."
            ),
            emitted_by="service_layer.publishing.publish",
            tags=("priority", "category", "target"),
            tag_values={"priority": PRIORITIES, "target": ("user", "users", "broadcast")},
            fields={"count": INT, "payload_bytes": INT, "duration_ms": FLOAT},
            example_query=(
                'SELECT sum("count") FROM "notify_publish" WHERE $timeFilter '
                'GROUP BY time($__interval), "priority"'
            ),
        ),
        Measurement(
            name="notify_delivery",
            description=(
                "One point per batch sent to one connection. `count` is the number "
                "of notifications in it; latency is from publish to send."
            ),
            emitted_by="service_layer.delivery.DeliveryHub",
            tags=("mode",),
            tag_values={"mode": ("live", "replay")},
            fields={"count": INT, "latency_ms_max": FLOAT, "latency_ms_mean": FLOAT},
            example_query=(
                'SELECT sum("count") FROM "notify_delivery" WHERE $timeFilter '
                'GROUP BY time($__interval), "mode"'
            ),
        ),
        Measurement(
            name="notify_ack",
            description=(
                "One point per ack event from a client. `count` is the number of "
                "stream entries the ack newly covers."
            ),
            emitted_by="service_layer.delivery.DeliveryHub",
            tags=(),
            fields={"count": INT},
            example_query=(
                'SELECT sum("count") FROM "notify_ack" WHERE $timeFilter GROUP BY time($__interval)'
            ),
        ),
        Measurement(
            name="notify_connection",
            description=("Socket.IO connections opened, closed and refused, with the reason."),
            emitted_by="entrypoints.sockets",
            tags=("event", "reason"),
            tag_values={"event": ("opened", "closed", "refused")},
            fields={"count": INT, "active": INT},
            example_query=(
                'SELECT last("active") FROM "notify_connection" WHERE $timeFilter '
                'GROUP BY time($__interval), "node"'
            ),
        ),
        Measurement(
            name="telemetry_self",
            description=(
                "The telemetry pipeline's own counters since the process started: "
                "records emitted, written to InfluxDB, spooled and dropped."
            ),
            emitted_by="adapters.influx_writer.InfluxWriter",
            tags=(),
            fields={"emitted": INT, "written": INT, "spooled": INT, "dropped": INT},
            example_query=(
                'SELECT non_negative_difference(last("written")) FROM "telemetry_self" '
                'WHERE $timeFilter GROUP BY time($__interval), "node", "role"'
            ),
        ),
    )
}


def measurement(name: str) -> Measurement:
    return CATALOGUE[name]
