"""Each catalogue field's rollup aggregate (``Field.rollup``): it names an
aggregate the rollups job knows, and everything a rollup writes to exists:
the retention policies, the fields of the rollup points, the marker the job
resumes from. A summary measurement's tally follows from the same aggregates."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from service.adapters.influx import Retention
from service.adapters.influx_points import format_line, schema_for
from service.adapters.influx_rollups import MARKER, aggregate_query
from service.domain.measurements import (
    CATALOGUE,
    ROLLED_UP,
    ROLLUP_AGGREGATES,
    ROLLUP_POLICIES,
    TALLY_SPECS,
    Field,
    FieldType,
    Measurement,
    TallySpec,
)
from service.service_layer.ports import DataPoint
from service.service_layer.rollups import MARKER_MEASUREMENT, run_rollups

START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_every_rollup_names_a_known_aggregate():
    for m in CATALOGUE.values():
        for name, spec in m.field_specs.items():
            assert spec.rollup is None or spec.rollup in ROLLUP_AGGREGATES, (m.name, name)
    with pytest.raises(ValueError, match="avg"):
        Field(FieldType.INTEGER, "avg")


def test_the_rolled_up_measurements_are_those_with_a_rolled_up_field():
    assert ROLLED_UP == tuple(name for name, m in CATALOGUE.items() if m.rollups)
    assert "notify_publish" in ROLLED_UP and "config_change" not in ROLLED_UP
    assert run_rollups.__defaults__[-1] == ROLLED_UP  # what the job rolls up by default


def test_every_rollup_retention_policy_is_created():
    created = {name for name, _, _ in Retention().policies()}
    assert set(ROLLUP_POLICIES.values()) <= created


@pytest.mark.parametrize("name", ROLLED_UP)
def test_a_rollup_query_writes_only_fields_the_rollup_schema_has(name):
    for resolution, policy in ROLLUP_POLICIES.items():
        query = aggregate_query(name, START, END, resolution)
        targets = re.findall(r'AS "([a-z_0-9]+)"', query)
        assert targets == list(CATALOGUE[name].rollups)
        schema = schema_for(name, policy)
        assert set(targets) == set(schema) <= set(CATALOGUE[name].fields)
        values = {f: 1.5 if kind is FieldType.FLOAT else 1 for f, kind in schema.items()}
        assert format_line(DataPoint(name, (), values, START), schema)  # no SchemaError


def test_the_rollups_marker_is_rolled_up():
    measurement, field = MARKER
    assert measurement == MARKER_MEASUREMENT
    assert field in CATALOGUE[measurement].rollups


def test_a_summary_is_tallied_the_way_it_rolls_up():
    delivered = TALLY_SPECS["notify_delivery"]
    assert delivered.sums == ("count", "batches", "bytes", "wire_bytes")
    assert delivered.peaks == ("latency_ms_max", "wait_ms_max")
    assert delivered.detail == ("latency_ms", "wait_ms")
    summaries = {name for name, m in CATALOGUE.items() if m.kind == "summary"}
    assert set(TALLY_SPECS) == summaries


def test_a_summary_field_that_cannot_be_tallied_is_refused():
    def summary(**fields: Field) -> Measurement:
        return Measurement("m", "", "", (), fields, "", kind="summary")

    with pytest.raises(ValueError, match="mean"):
        TallySpec.of(summary(count=Field(FieldType.INTEGER, "sum"),
                             depth=Field(FieldType.INTEGER, "mean")))
    with pytest.raises(ValueError, match="rolled up"):
        TallySpec.of(summary(count=Field(FieldType.INTEGER, "sum"),
                             depth=Field(FieldType.INTEGER)))
