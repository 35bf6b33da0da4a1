"""What a catalogue entry is: a measurement, its fields, and how each field
is rolled up and tallied."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property


class FieldType(enum.Enum):
    INTEGER = "integer"
    FLOAT = "float"
    STRING = "string"
    BOOLEAN = "boolean"


INT, FLOAT, STRING = FieldType.INTEGER, FieldType.FLOAT, FieldType.STRING
COMMON_TAGS = ("node", "role")
ROLES = ("serve", "jobs")

# The rollups job (service_layer.rollups) downsamples raw points into 1-minute
# and 1-hour buckets, written under the same names to these retention policies,
# so a query switches resolution by naming the policy.
ROLLUP_POLICIES = {"1m": "rollup_1m", "1h": "rollup_1h"}
# ``sum`` and ``max`` are exact; ``mean`` (of a gauge) is a float; ``last`` (of
# a counter cumulative since start); ``p50``/``p95``/``p99``: that percentile
# (nearest rank) of the per-interval values, the way the optimization report
# reads p99 over a window.
ROLLUP_AGGREGATES = ("sum", "max", "mean", "last", "p50", "p95", "p99")
PERCENTILE_AGGREGATES = ("p50", "p95", "p99")


@dataclass(frozen=True)
class Field:
    """One field of a measurement: its type, and ``rollup``, the aggregate
    over a rollup bucket's raw points of one series (None: not rolled up)."""

    type: FieldType
    rollup: str | None = None

    def __post_init__(self) -> None:
        if self.rollup is not None and self.rollup not in ROLLUP_AGGREGATES:
            raise ValueError(f"rollup {self.rollup!r} is not one of {ROLLUP_AGGREGATES}")


@dataclass(frozen=True)
class Measurement:
    """One measurement. ``kind`` is "event" (one point per occurrence) or
    "summary": one point per tag set per writer interval (about a second),
    added to on the hot path by a ``TallySpec``. A summary's fields combine
    over an interval the way they roll up over a bucket: ``sum`` fields are
    summed, ``max`` fields keep the maximum, and ``p50``/``p95``/``p99``
    fields are the percentiles of the interval's per-entry values. Callers
    pass a summary's values by position, in field order: adding or moving a
    ``sum`` or ``max`` field moves the values they must pass."""

    name: str
    description: str
    emitted_by: str
    tags: tuple[str, ...]
    field_specs: dict[str, Field]
    example_query: str
    tag_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kind: str = "event"
    # The fields a point may lack (each emitter's code paths; the test
    # tests/unit/test_telemetry_optional_fields.py writes points through them).
    # Every other field is on every point: a query may select it unguarded.
    optional_fields: tuple[str, ...] = ()

    @property
    def all_tags(self) -> tuple[str, ...]:
        return COMMON_TAGS + self.tags

    @cached_property
    def fields(self) -> dict[str, FieldType]:
        """Each field's type (cached: the line encoder reads it per series)."""
        return {name: spec.type for name, spec in self.field_specs.items()}

    @cached_property
    def rollups(self) -> dict[str, str]:
        """The rolled-up fields and their aggregates, in field order (empty:
        the measurement is not rolled up)."""
        return {name: spec.rollup for name, spec in self.field_specs.items()
                if spec.rollup is not None}

    @cached_property
    def rollup_fields(self) -> dict[str, FieldType]:
        """The fields of the rollups and their types: a mean is a float, every
        other aggregate keeps the raw field's type."""
        return {name: FieldType.FLOAT if aggregate == "mean" else self.fields[name]
                for name, aggregate in self.rollups.items()}


@dataclass(frozen=True)
class TallySpec:
    """How the hot path adds to a summary measurement: up to four summed
    fields and up to two maxima (``peaks``), passed by position in this
    order, so that a tally builds no dict per call. ``detail`` names the
    per-entry values observed into histograms (their ``_p50``, ``_p95`` and
    ``_p99`` fields)."""

    measurement: str
    sums: tuple[str, ...]
    peaks: tuple[str, ...] = ()
    detail: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= len(self.sums) <= 4 or len(self.peaks) > 2:
            raise ValueError(f"{self.measurement}: one to four sums and at most two peaks")

    @classmethod
    def of(cls, measurement: Measurement) -> TallySpec:
        """A summary measurement's tally, from its fields' rollup aggregates,
        in field order (the order callers pass values in)."""
        if measurement.kind != "summary":
            raise ValueError(f"{measurement.name} is not a summary measurement")
        sums, peaks, detail = [], [], []
        for name, aggregate in measurement.rollups.items():
            if aggregate == "sum":
                sums.append(name)
            elif aggregate == "max":
                peaks.append(name)
            elif aggregate in PERCENTILE_AGGREGATES and name.endswith(f"_{aggregate}"):
                histogram = name.removesuffix(f"_{aggregate}")
                if histogram not in detail:
                    detail.append(histogram)
            else:
                raise ValueError(f"{measurement.name}.{name}: a summary field must roll up "
                                 f"as sum, max or its own percentile, not {aggregate!r}")
        if set(measurement.fields) != set(measurement.rollups):
            raise ValueError(f"{measurement.name}: every field of a summary is rolled up")
        return cls(measurement.name, tuple(sums), tuple(peaks), tuple(detail))
