"""Configuration: changes of the effective configuration, and the events
appended to the control log."""

from __future__ import annotations

from service.domain.control import EVENT_TYPES
from service.domain.measurements.measurement import INT, STRING, Field, Measurement

MEASUREMENTS: tuple[Measurement, ...] = (
    Measurement(
        name="config_change",
        description=(
            "A change of effective configuration, for Grafana annotations: "
            "`kind` says what changed, `level` is the optimization level after "
            "it, `text` describes it and `actor` made it (`node` for a start-up, "
            "whose `level` is the one live after the control log's history)."
        ),
        emitted_by="bootstrap.App.start_background, service_layer.live_config.LiveConfig",
        tags=("kind",),
        tag_values={"kind": ("startup", "level", "parameter")},
        field_specs={
            "level": Field(STRING),
            "text": Field(STRING),
            "actor": Field(STRING),
        },
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
        emitted_by="service_layer.live_config.LiveConfig.append",
        tags=("type",),
        tag_values={"type": EVENT_TYPES},
        field_specs={
            "seq": Field(INT),
            "actor": Field(STRING),
            "text": Field(STRING),
        },
        example_query=(
            'SELECT "seq", "actor", "text" FROM "control_event" WHERE $timeFilter '
            'GROUP BY "type"'
        ),
    ),
)
