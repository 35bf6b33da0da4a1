"""The telemetry catalogue: every measurement the service writes to InfluxDB.

The single source of truth for measurement, tag and field names, one module
per area. Dashboards, alert rules and jobs may name only what is defined here
(tests check them), and docs/telemetry.md is generated from it.

Tags must have bounded cardinality: never user ids or notification ids.
Every point also carries the common tags ``node`` (one per service node) and
``role`` (serve or jobs).

A field's rollup aggregate is an attribute of the field (``Field.rollup``);
the rollups job rolls up the measurements that have any (``ROLLED_UP``), and
a summary measurement's hot-path tally (``TallySpec``) follows from the same
aggregates.
"""

from __future__ import annotations

from service.domain.job_names import JOB_NAMES
from service.domain.measurements import (
    analysis_measurements,
    connection_measurements,
    control_measurements,
    delivery_measurements,
    pipeline_measurements,
    publishing_measurements,
    runtime_measurements,
    storage_measurements,
)
from service.domain.measurements.analysis_measurements import (
    ANALYSIS_METRICS,
    IMPACT_FIGURE_FIELDS,
    TREND_WINDOWS,
)
from service.domain.measurements.measurement import (
    COMMON_TAGS,
    ROLES,
    ROLLUP_AGGREGATES,
    ROLLUP_POLICIES,
    Field,
    FieldType,
    Measurement,
    TallySpec,
)
from service.domain.measurements.publishing_measurements import PRIORITIES

__all__ = [
    "ACKED", "ANALYSIS_METRICS", "CATALOGUE", "COMMON_TAGS", "DELIVERED", "DISPATCHED",
    "DROPPED", "IMPACT_FIGURE_FIELDS", "JOB_NAMES", "PRIORITIES", "PUBLISHED", "QUEUES",
    "RELOADED", "ROLES", "ROLLED_UP", "ROLLUP_AGGREGATES", "ROLLUP_POLICIES", "TALLY_SPECS",
    "THROTTLED", "TREND_WINDOWS", "WRITE_BATCHES", "Field", "FieldType", "Measurement",
    "TallySpec", "rollup_fields",
]

# The order of the areas is the order of docs/telemetry.md.
AREAS = (
    publishing_measurements,
    delivery_measurements,
    connection_measurements,
    storage_measurements,
    runtime_measurements,
    pipeline_measurements,
    control_measurements,
    analysis_measurements,
)

CATALOGUE: dict[str, Measurement] = {
    m.name: m for area in AREAS for m in area.MEASUREMENTS
}

# The measurements the rollups job rolls up: those with a rolled-up field.
ROLLED_UP: tuple[str, ...] = tuple(name for name, m in CATALOGUE.items() if m.rollups)


def rollup_fields(name: str) -> dict[str, FieldType]:
    """The fields of a measurement's rollups and their types (empty: not rolled up)."""
    return dict(CATALOGUE[name].rollup_fields)


# Each summary measurement's tally, derived from its fields.
TALLY_SPECS: dict[str, TallySpec] = {
    name: TallySpec.of(m) for name, m in CATALOGUE.items() if m.kind == "summary"
}
PUBLISHED = TALLY_SPECS["notify_publish"]
DISPATCHED = TALLY_SPECS["notify_dispatch"]
DELIVERED = TALLY_SPECS["notify_delivery"]
ACKED = TALLY_SPECS["notify_ack"]
DROPPED = TALLY_SPECS["notify_drop"]
THROTTLED = TALLY_SPECS["notify_throttle"]
RELOADED = TALLY_SPECS["notify_reload"]
QUEUES = TALLY_SPECS["notify_queues"]
WRITE_BATCHES = TALLY_SPECS["db_write_batch"]
